package agent

import (
	"reflect"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/api"
)

func TestSpecMounts(t *testing.T) {
	ms := []api.Mount{
		{Source: "/host", Destination: "/a", ReadOnly: true, CreateSource: true},
		{Type: api.MountBind, Source: "/host2", Destination: "/b", Propagation: "rshared"},
		{Type: api.MountVolume, Source: "data", Destination: "/c"},
		{Type: api.MountTmpfs, Destination: "/d", TmpfsSize: 1 << 20},
	}
	want := []specs.Mount{
		{Destination: "/a", Type: "bind", Source: "/host", Options: []string{"rbind", "rprivate", "ro"}},
		{Destination: "/b", Type: "bind", Source: "/host2", Options: []string{"rbind", "rshared"}},
		{Destination: "/c", Type: "bind", Source: "/vols/data/_data", Options: []string{"rbind", "rprivate"}},
		{Destination: "/d", Type: "tmpfs", Source: "tmpfs", Options: []string{"rw", "noexec", "nosuid", "nodev", "size=1048576"}},
	}
	if got := specMounts(ms, "/vols"); !reflect.DeepEqual(got, want) {
		t.Errorf("specMounts:\n got %+v\nwant %+v", got, want)
	}
}
