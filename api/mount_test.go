package api

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseMountVolumes(t *testing.T) {
	cases := []struct {
		name, in string
		want     Mount
		err      string
	}{
		{"bind", "/a:/b", Mount{Source: "/a", Destination: "/b", CreateSource: true}, ""},
		{"bind read-only shared", "/a:/b:ro,rshared", Mount{Source: "/a", Destination: "/b", CreateSource: true, ReadOnly: true, Propagation: "rshared"}, ""},
		{"named volume", "data:/var/lib/data", Mount{Type: MountVolume, Source: "data", Destination: "/var/lib/data"}, ""},
		{"volume ro nocopy", "my.vol_1:/d:ro,nocopy", Mount{Type: MountVolume, Source: "my.vol_1", Destination: "/d", ReadOnly: true, NoCopy: true}, ""},
		{"selinux label ignored", "v1:/d:z", Mount{Type: MountVolume, Source: "v1", Destination: "/d"}, ""},
		{"one-letter volume name", "a:/b", Mount{}, "invalid characters for a local volume name"},
		{"relative host path", "./x:/b", Mount{}, "use absolute path"},
		{"anonymous", "/data", Mount{}, "anonymous volumes are not supported"},
		{"relative target", "/a:b", Mount{}, "must be absolute"},
		{"bad mode", "/a:/b:xx", Mount{}, "invalid mode"},
		{"nocopy on a bind", "/a:/b:nocopy", Mount{}, "invalid mode"},
		{"propagation on a volume", "vv:/b:rshared", Mount{}, "invalid mode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMount(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseMount(%q) = %+v, %v; want an error containing %q", tc.in, m, err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(m, tc.want) {
				t.Fatalf("ParseMount(%q) = %+v, %v; want %+v", tc.in, m, err, tc.want)
			}
		})
	}
}

func TestParseMountFlag(t *testing.T) {
	cases := []struct {
		name, in string
		want     Mount
		err      string
	}{
		{"bind", "type=bind,source=/src,target=/dst,readonly", Mount{Type: MountBind, Source: "/src", Destination: "/dst", ReadOnly: true}, ""},
		{"short keys", "type=bind,src=/src,dst=/dst,ro=true,bind-propagation=rslave", Mount{Type: MountBind, Source: "/src", Destination: "/dst", ReadOnly: true, Propagation: "rslave"}, ""},
		{"volume is the default type", "source=data,destination=/d,volume-nocopy", Mount{Type: MountVolume, Source: "data", Destination: "/d", NoCopy: true}, ""},
		{"readonly=false", "source=data,target=/d,readonly=false", Mount{Type: MountVolume, Source: "data", Destination: "/d"}, ""},
		{"tmpfs", "type=tmpfs,target=/cache,tmpfs-size=64m,tmpfs-mode=1770", Mount{Type: MountTmpfs, Destination: "/cache", TmpfsSize: 64 << 20, TmpfsMode: 0o1770}, ""},
		{"csv quoting", `type=bind,"source=/a,b",target=/c`, Mount{Type: MountBind, Source: "/a,b", Destination: "/c"}, ""},
		{"no target", "type=tmpfs", Mount{}, "target is required"},
		{"unknown key", "type=bind,source=/a,target=/b,colour=red", Mount{}, `unexpected key "colour"`},
		{"bare key", "type=bind,source", Mount{}, "must be a key=value pair"},
		{"bad type", "type=nfs,target=/b", Mount{}, "use bind, volume or tmpfs"},
		{"relative bind source", "type=bind,source=rel,target=/b", Mount{}, "must be an absolute host path"},
		{"tmpfs with source", "type=tmpfs,source=x,target=/b", Mount{}, "source must not be given"},
		{"tmpfs-size on a bind", "type=bind,source=/a,target=/b,tmpfs-size=1m", Mount{}, "for type=tmpfs only"},
		{"bad tmpfs-mode", "type=tmpfs,target=/b,tmpfs-mode=999", Mount{}, "octal mode"},
		{"bad tmpfs-size", "type=tmpfs,target=/b,tmpfs-size=lots", Mount{}, "tmpfs-size"},
		{"bad readonly", "type=tmpfs,target=/b,readonly=maybe", Mount{}, "invalid value for readonly"},
		{"bad propagation", "type=bind,source=/a,target=/b,bind-propagation=odd", Mount{}, "bind-propagation"},
		{"target /", "type=tmpfs,target=/", Mount{}, "cannot be /"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMountFlag(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseMountFlag(%q) = %+v, %v; want an error containing %q", tc.in, m, err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(m, tc.want) {
				t.Fatalf("ParseMountFlag(%q) = %+v, %v; want %+v", tc.in, m, err, tc.want)
			}
		})
	}
}

func TestTmpfsMountOptions(t *testing.T) {
	cases := []struct {
		name string
		in   string // --tmpfs value, or a Mount below
		m    *Mount
		want string
	}{
		{"docker's defaults", "/run", nil, "rw,noexec,nosuid,nodev"},
		{"exec replaces noexec", "/run:exec,size=64m", nil, "rw,nosuid,nodev,exec,size=64m"},
		{"later size wins", "/run:size=1m,size=2m", nil, "rw,noexec,nosuid,nodev,size=2m"},
		{"ro", "/run:ro", nil, "noexec,nosuid,nodev,ro"},
		{"--mount size and mode", "", &Mount{Type: MountTmpfs, Destination: "/x", TmpfsSize: 1 << 20, TmpfsMode: 0o700}, "rw,noexec,nosuid,nodev,size=1048576,mode=700"},
		{"--mount readonly", "", &Mount{Type: MountTmpfs, Destination: "/x", ReadOnly: true}, "ro,noexec,nosuid,nodev"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var m Mount
			if tc.m != nil {
				m = *tc.m
			} else {
				var err error
				if m, err = ParseTmpfs(tc.in); err != nil {
					t.Fatal(err)
				}
			}
			if got := strings.Join(m.TmpfsMountOptions(), ","); got != tc.want {
				t.Errorf("options %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidateMounts(t *testing.T) {
	c := ContainerCreate{Image: "busybox", Mounts: []Mount{{Type: MountTmpfs, Destination: "/x"}, {Type: MountVolume, Source: "vv", Destination: "/x/"}}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "duplicate mount point: /x") {
		t.Errorf("two mounts on /x: %v", err)
	}
	if _, err := ParseTmpfs("rel"); err == nil {
		t.Errorf("--tmpfs rel accepted")
	}
	for _, v := range []VolumeCreate{{Name: "x"}, {Name: "-a"}, {Name: "a/b"}, {Name: "ok", Driver: "nfs"}} {
		if v.Validate() == nil {
			t.Errorf("%+v accepted", v)
		}
	}
	for _, v := range []VolumeCreate{{}, {Name: "ab"}, {Name: "A.b_c-1", Driver: "local"}} {
		if err := v.Validate(); err != nil {
			t.Errorf("%+v: %v", v, err)
		}
	}
}
