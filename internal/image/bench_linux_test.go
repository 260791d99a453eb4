package image

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/perfdoc"
	"github.com/ovnet/ov/internal/testutil"
)

// TestBenchImage measures the image store beside references run on the same data in the same run,
// and writes the table to the file named by OV_PERFDOC (scripts/bench.sh sets it to
// docs/performance.md). It measures and asserts nothing about speed; without OV_PERFDOC it is skipped.
func TestBenchImage(t *testing.T) {
	out := testutil.SkipUnlessBench(t)
	runs := 15
	if n, err := strconv.Atoi(os.Getenv("OV_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	ctx := context.Background()
	base, _ := testImages(t)
	archive := dockerArchive(t, map[string]v1Image{"busybox:latest": base})
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	testutil.BusyboxRootfs(t, rootfs)
	rootTar := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(rootTar, tarDir(t, rootfs), 0o644); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()

	loadTimes := measure(t, runs, func(i int) time.Duration {
		s := newStore(t)
		start := time.Now()
		if _, err := s.LoadFile(ctx, archive, nil); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		os.RemoveAll(s.Root())
		return d
	})
	tarTimes := measure(t, runs, func(i int) time.Duration {
		dir := filepath.Join(work, fmt.Sprintf("tar%d", i))
		os.Mkdir(dir, 0o755)
		start := time.Now()
		if out, err := exec.Command("tar", "-xf", rootTar, "-C", dir).CombinedOutput(); err != nil {
			t.Fatalf("tar: %v: %s", err, out)
		}
		d := time.Since(start)
		os.RemoveAll(dir)
		return d
	})

	s := newStore(t)
	if _, err := s.LoadFile(ctx, archive, nil); err != nil {
		t.Fatal(err)
	}
	prepareTimes := measure(t, runs, func(i int) time.Duration {
		id := fmt.Sprintf("bench%d", i)
		start := time.Now()
		if _, err := s.Prepare(ctx, id, "busybox"); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		if err := s.Release(ctx, id); err != nil {
			t.Fatal(err)
		}
		return d
	})
	releaseTimes := measure(t, runs, func(i int) time.Duration {
		id := fmt.Sprintf("rel%d", i)
		if _, err := s.Prepare(ctx, id, "busybox"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := s.Release(ctx, id); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	})
	copyTimes := measure(t, runs, func(i int) time.Duration {
		dst := filepath.Join(work, fmt.Sprintf("cp%d", i))
		start := time.Now()
		if out, err := exec.Command("cp", "-a", rootfs, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v: %s", err, out)
		}
		d := time.Since(start)
		os.RemoveAll(dst)
		return d
	})

	st, _ := os.Stat(archive)
	var b strings.Builder
	fmt.Fprintf(&b, "## Image store (runtime/image)\n\n")
	fmt.Fprintf(&b, "Busybox image (%d applets, 2 layers; docker save archive of %d KiB). Median and p90 of %d runs.\n\n", countApplets(rootfs), st.Size()/1024, runs)
	fmt.Fprintf(&b, "| operation | median | p90 | reference | median | p90 |\n|---|---|---|---|---|---|\n")
	row := func(op string, got []time.Duration, ref string, refs []time.Duration) {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", op, pct(got, 50), pct(got, 90), ref, pct(refs, 50), pct(refs, 90))
	}
	row("`Load` (copy archive, verify digests, unpack 2 layers safely, index)", loadTimes, "`tar -xf` of the same rootfs", tarTimes)
	row("`Prepare` (container rootfs: overlayfs mount)", prepareTimes, "`cp -a` of the rootfs (a private copy)", copyTimes)
	row("`Release` (unmount, delete upper dir)", releaseTimes, "`cp -a` of the rootfs", copyTimes)
	fmt.Fprintf(&b, "\n%s\n", perfdoc.Machine())
	if err := perfdoc.WriteSection(out, "image", b.String()); err != nil {
		t.Fatal(err)
	}
	t.Log(b.String())
}

func measure(t *testing.T, runs int, f func(i int) time.Duration) []time.Duration {
	t.Helper()
	var out []time.Duration
	for i := range runs {
		out = append(out, f(i))
	}
	slices.Sort(out)
	return out
}

func pct(d []time.Duration, p int) string {
	v := d[(len(d)-1)*p/100]
	return fmt.Sprintf("%.2f ms", float64(v.Microseconds())/1000)
}

func countApplets(rootfs string) int {
	n := 0
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin"} {
		e, _ := os.ReadDir(filepath.Join(rootfs, d))
		n += len(e)
	}
	return n
}
