package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// StrictEnv is the switch under which a test that would skip fails instead, with the skip's reason
// (.ci/run sets OV_STRICT=1). CI=true (set by CI services) turns it on as well unless OV_STRICT=0.
const StrictEnv = "OV_STRICT"

// UnitEnv is set by `make unit`: privileged tests skip even when run as root, and strict mode is off,
// so that only the tests that need no root run.
const UnitEnv = "OV_UNIT"

// PerfDocEnv names the file benchmarks write their tables to (`make bench` sets it).
const PerfDocEnv = "OV_PERFDOC"

// Strict reports whether a skip fails the test: OV_STRICT set to anything but "" or "0", or CI=true
// with OV_STRICT unset; never under `make unit` (OV_UNIT).
func Strict() bool {
	if Unit() {
		return false
	}
	switch v := os.Getenv(StrictEnv); v {
	case "", "0":
		return v == "" && os.Getenv("CI") == "true"
	default:
		return true
	}
}

// Unit reports whether only unit tests run (`make unit` sets OV_UNIT=1).
func Unit() bool {
	v := os.Getenv(UnitEnv)
	return v != "" && v != "0"
}

// Skip skips t with reason, loudly; under the strict switch (Strict) it fails t with the reason
// instead, so that a CI run cannot pass by skipping.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if Strict() {
		t.Fatalf("STRICT (%s=1 or CI=true): this test would skip: %s", StrictEnv, reason)
	}
	t.Skip("SKIPPED: " + reason)
}

// Skipf is Skip with a format.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	Skip(t, fmt.Sprintf(format, args...))
}

// RequireRoot skips t loudly when the test is not running as root (fails it under the strict switch),
// and skips every privileged test under `make unit`. CI runs as root, so privileged tests always run
// there.
func RequireRoot(t testing.TB) {
	t.Helper()
	if Unit() {
		t.Skip("SKIPPED: privileged test: make unit runs only the tests that need no root (make test runs it)")
	}
	if os.Geteuid() != 0 {
		Skip(t, "privileged test: needs root (CI runs it as root); run with sudo go test")
	}
}

// RequireBinary skips t (fails it under the strict switch) when the program path (an absolute path,
// or a name looked up in PATH) is missing, naming the Debian package that provides it; scripts/deps.sh
// installs every such package. It returns the program's path.
func RequireBinary(t testing.TB, path, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err != nil {
		Skipf(t, "needs %s (Debian package %s; make deps installs it): %v", path, debianPackage, err)
	}
	return p
}

// NotApplicable skips a test or case that by design does not apply here, even under the strict
// switch; reason must say what covers the behaviour instead. It is not for a missing program,
// privilege or kernel feature (use Skip, RequireRoot or RequireBinary).
func NotApplicable(t testing.TB, reason string) {
	t.Helper()
	t.Skip("not applicable: " + reason)
}

// SkipUnlessBench skips a benchmark-as-test unless OV_PERFDOC names the file to write its table to
// (make bench sets it), and returns that file. Benchmarks measure and assert nothing about behaviour,
// so they skip under the strict switch as well.
func SkipUnlessBench(t testing.TB) string {
	t.Helper()
	doc := os.Getenv(PerfDocEnv)
	if doc == "" {
		t.Skipf("benchmark: set %s=docs/performance.md (make bench does)", PerfDocEnv)
	}
	return doc
}

// SkipPart is for a test that can still check the rest when one part cannot run here: it logs the
// reason loudly and lets the test go on; under the strict switch it fails the test instead.
func SkipPart(t testing.TB, reason string) {
	t.Helper()
	if Strict() {
		t.Fatalf("STRICT (%s=1 or CI=true): part of this test would be skipped: %s", StrictEnv, reason)
	}
	t.Log("PART SKIPPED: " + reason)
}
