package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/vishvananda/netns"

	ovimage "github.com/ovnet/ov/internal/image"
	"github.com/ovnet/ov/internal/perfdoc"
	"github.com/ovnet/ov/internal/testutil"
)

// TestBenchPull measures `ovctl image pull`'s engine (image.Store.Pull: fetch, verify, unpack) of a
// multi-layer image from Debian's docker-registry on loopback, cold (empty store) and warm (every
// layer present), beside `docker pull` of the same image from the same registry when dockerd is
// installed (its own daemon in a namespace of its own; docker.io is not in make deps). Both reach the
// registry through one TCP relay of this test (docker's namespace cannot see the host's loopback).
// It measures and asserts nothing; without OV_PERFDOC it is skipped.
func TestBenchPull(t *testing.T) {
	doc := testutil.SkipUnlessBench(t)
	runs := 5
	if n, err := strconv.Atoi(os.Getenv("OV_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	ovAddr := relay(t, "", reg.Host)
	ref := ovAddr + "/bench/app:v1"
	layers, size := pushBenchImage(t, ref)
	load := loadAverage()

	ctx := context.Background()
	var ovCold, ovWarm []time.Duration
	for i := range runs {
		cfg := ovimage.DefaultConfig()
		cfg.Root = filepath.Join(tmpDir, fmt.Sprintf("pullbench-%d", i))
		s, err := ovimage.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := s.Pull(ctx, ref, ovimage.PullOptions{}); err != nil {
			t.Fatal(err)
		}
		ovCold = append(ovCold, time.Since(start))
		start = time.Now()
		if _, err := s.Pull(ctx, ref, ovimage.PullOptions{}); err != nil {
			t.Fatal(err)
		}
		ovWarm = append(ovWarm, time.Since(start))
		os.RemoveAll(cfg.Root)
	}
	dkCold, dkWarm, dkErr := benchDockerPull(t, reg.Host, runs)
	body := pullSection(layers, size, runs, ovCold, ovWarm, dkCold, dkWarm, dkErr, load+" at the start, "+loadAverage()+" at the end")
	if err := perfdoc.WriteSection(doc, "pull", body); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + body)
}

// pushBenchImage pushes busybox plus four layers of 4 MiB of random bytes (incompressible) to ref.
func pushBenchImage(t *testing.T, ref string) (layers int, size int64) {
	t.Helper()
	bb, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	blobs := [][]byte{bb}
	for i := range 4 {
		blobs = append(blobs, randomLayer(t, fmt.Sprintf("data/blob%d", i), 4<<20))
	}
	img := empty.Image
	for _, b := range blobs {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
		n, _ := l.Size()
		size += n
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return len(blobs), size
}

func randomLayer(t *testing.T, file string, n int) []byte {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, file)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, n)
	_, _ = rand.Read(data)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("tar", "-C", dir, "-cf", "-", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// relay listens on 127.0.0.1 of namespace ns ("" for this one) and forwards every connection to
// target (on this namespace's loopback); it returns the address it listens on.
func relay(t *testing.T, ns, target string) string {
	t.Helper()
	lnc := make(chan net.Listener, 1)
	errc := make(chan error, 1)
	go func() {
		// A thread of its own, never given back: it may have entered ns.
		runtime.LockOSThread()
		if ns != "" {
			h, err := netns.GetFromPath("/run/netns/" + ns)
			if err != nil {
				errc <- err
				return
			}
			defer h.Close()
			if err := netns.Set(h); err != nil {
				errc <- err
				return
			}
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			errc <- err
			return
		}
		lnc <- ln
	}()
	var ln net.Listener
	select {
	case ln = <-lnc:
	case err := <-errc:
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	return ln.Addr().String()
}

// benchDockerPull times `docker pull` cold (after docker rmi) and warm, or says why it cannot.
func benchDockerPull(t *testing.T, regHost string, runs int) (cold, warm []time.Duration, why string) {
	t.Helper()
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		return nil, nil, "dockerd is not installed on this machine (Debian package docker.io; make deps does not install it): ov alone."
	}
	client := "/usr/bin/docker"
	if _, err := os.Stat(client); err != nil {
		if client, err = exec.LookPath("docker"); err != nil {
			return nil, nil, "dockerd is installed but no docker client is: ov alone."
		}
	}
	d := &dockerd{bin: bin, client: client, dir: filepath.Join(tmpDir, "docker-pull")}
	d.sock = filepath.Join(d.dir, "docker.sock")
	if err := d.start(t); err != nil {
		return nil, nil, "dockerd did not start: " + err.Error()
	}
	ref := relay(t, d.netns, regHost) + "/bench/app:v1" // 127.0.0.1: docker's default insecure range
	timeIt := func(args ...string) (time.Duration, error) {
		start := time.Now()
		_, err := d.docker(args...)
		return time.Since(start), err
	}
	for range runs {
		c, err := timeIt("pull", "-q", ref)
		if err != nil {
			return nil, nil, err.Error()
		}
		w, err := timeIt("pull", "-q", ref)
		if err != nil {
			return nil, nil, err.Error()
		}
		cold, warm = append(cold, c), append(warm, w)
		if _, err := d.docker("rmi", ref); err != nil {
			return nil, nil, err.Error()
		}
	}
	return cold, warm, ""
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func pullSection(layers int, size int64, runs int, ovCold, ovWarm, dkCold, dkWarm []time.Duration, dkErr, load string) string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	var b strings.Builder
	fmt.Fprintf(&b, "## Image pull from a registry\n\n")
	fmt.Fprintf(&b, "An image of %d layers (busybox and four layers of 4 MiB of random bytes; %.1f MiB compressed) pulled from\n", layers, float64(size)/(1<<20))
	fmt.Fprintf(&b, "Debian's docker-registry on loopback; median of %d runs. Cold: nothing of the image local (ov: a new store;\n", runs)
	b.WriteString("docker: after `docker rmi`). Warm: the image is there (ov and docker only fetch the manifest and config).\n")
	b.WriteString("ov is its engine (`image.Store.Pull`: fetch, verify the digests, unpack through the safe unpacker,\n")
	b.WriteString("sync); docker is `docker pull -q`, its CLI and daemon included. Both go through one TCP relay of the test.\n\n")
	b.WriteString("| pull | ov | docker pull |\n|---|---|---|\n")
	dk := func(ds []time.Duration) string {
		if len(ds) == 0 {
			return "—"
		}
		return ms(median(ds))
	}
	fmt.Fprintf(&b, "| cold | %s | %s |\n", ms(median(ovCold)), dk(dkCold))
	fmt.Fprintf(&b, "| warm (up to date) | %s | %s |\n", ms(median(ovWarm)), dk(dkWarm))
	if dkErr != "" {
		fmt.Fprintf(&b, "\nNo docker reference: %s\n", dkErr)
	}
	fmt.Fprintf(&b, "\n%s, load average %s.\n", perfdoc.Machine(), load)
	return b.String()
}
