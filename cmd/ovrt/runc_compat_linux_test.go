package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/testutil"
)

// runcScript prints what a user of a `runc spec` bundle sees, then exits 3.
const runcScript = `echo hello; echo uid=$(id -u); echo hostname=$(hostname)
grep -E '^(CapBnd|CapPrm|CapEff|CapInh|CapAmb|NoNewPrivs):' /proc/self/status | sed 's/:[[:space:]]*/=/'
echo x >/dev/null && echo null=ok; head -c 1 /dev/urandom >/dev/null && echo urandom=ok
touch /rootfs-write 2>/dev/null && echo rootfs=rw || echo rootfs=ro
echo nofile=$(ulimit -n); echo pid=$$; echo links=$(ls /sys/class/net | tr '\n' ' ')
trap 'echo trapped' TERM; sleep 1 & wait $!
exit 3`

// TestRuncSpecBundle runs a bundle made by `runc spec` (only process.args and terminal changed, as
// a user does with jq) with ovrt, and with runc on the same bundle: exit code and output match.
func TestRuncSpecBundle(t *testing.T) {
	testutil.RequireRoot(t)
	runc := testutil.RequireBinary(t, "runc", "runc")
	bundle := t.TempDir()
	testutil.BusyboxRootfs(t, filepath.Join(bundle, "rootfs"))
	cmd := exec.Command(runc, "spec")
	cmd.Dir = bundle
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v: %s", err, out)
	}
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A generic document, so that everything else stays exactly as runc wrote it.
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"sh", "-c", runcScript}
	if b, err = json.MarshalIndent(cfg, "", "\t"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}

	runIt := func(bin, id string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, "--root", t.TempDir(), "run", "--bundle", bundle, id)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		code := 0
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s run: %v", bin, err)
		}
		return stdout.String(), stderr.String(), code
	}
	out, errOut, code := runIt(ovrtBin, testutil.UniqueName("runcspec"))
	if code != 3 || !strings.HasPrefix(out, "hello\n") {
		t.Fatalf("ovrt run of a runc spec bundle: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"CapAmb=0000000000000000", "CapEff=0000000020000420", "null=ok", "urandom=ok", "rootfs=ro", "pid=1", "links=lo", "hostname=runc", "NoNewPrivs=1"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("ovrt output lacks %q:\n%s", want, out)
		}
	}
	rout, rerr, rcode := runIt(runc, testutil.UniqueName("runcref"))
	if rcode != code || rout != out {
		t.Errorf("ovrt and runc differ on the same bundle:\novrt: exit %d\n%s\nrunc: exit %d\n%s%s", code, out, rcode, rout, rerr)
	}
}
