// Package structure holds tests of the shape of the code base itself: which packages the CLI links, which
// packages may import which, and how long a function may grow. They keep the seams of
// docs/architecture.md true as the code changes.
package structure

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// root is the repository root (this file is in test/structure).
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return strings.Fields(string(out))
}

// TestCLILinksNoDaemonCode: ovctl is a client. It must not link the kernel, firewall or etcd server code
// the daemons use (a bigger binary, a bigger attack surface, and a sign that a seam is crooked).
func TestCLILinksNoDaemonCode(t *testing.T) {
	forbidden := []string{"github.com/vishvananda/netlink", "github.com/vishvananda/netns",
		"github.com/coreos/go-iptables", "go.etcd.io/etcd/server"}
	for _, dep := range goList(t, "-deps", "./cmd/ovctl") {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("cmd/ovctl links %s; the CLI must reach daemon code only through api/ and the clients", dep)
			}
		}
	}
}

// TestDriversDoNotImportAgent: network drivers implement internal/driver's contract; neither side
// imports the other (cmd/ovagent wires drivers into the agent).
func TestDriversDoNotImportAgent(t *testing.T) {
	const agent = "github.com/ovnet/ov/internal/agent"
	for _, line := range goList(t, "-f", "{{.ImportPath}}:{{join .Imports \",\"}}", "./internal/...") {
		pkg, imports, _ := strings.Cut(line, ":")
		if pkg == agent {
			for _, imp := range strings.Split(imports, ",") {
				if strings.HasPrefix(imp, "github.com/ovnet/ov/internal/driver/") {
					t.Errorf("%s imports the driver %s; the agent knows drivers only through internal/driver (cmd/ovagent wires them)", pkg, imp)
				}
			}
			continue
		}
		if strings.HasPrefix(pkg, agent+"/") {
			continue
		}
		for _, imp := range strings.Split(imports, ",") {
			if imp == agent {
				t.Errorf("%s imports %s; drivers and libraries must not depend on the agent", pkg, agent)
			}
		}
	}
}

// TestNoEtcdOutsideStore: only the controller's store speaks etcd; everything else sees its typed records
// and events.
func TestNoEtcdOutsideStore(t *testing.T) {
	allowed := []string{"github.com/ovnet/ov/internal/controller/store", "github.com/ovnet/ov/cmd/ovbench-ipam"} // the benchmark measures bare etcd beside the API
	for _, line := range goList(t, "-f", "{{.ImportPath}}:{{join .Imports \",\"}}", "./...") {
		pkg, imports, _ := strings.Cut(line, ":")
		ok := false
		for _, a := range allowed {
			if pkg == a || strings.HasPrefix(pkg, a+"/") {
				ok = true
			}
		}
		if ok {
			continue
		}
		for _, imp := range strings.Split(imports, ",") {
			if strings.HasPrefix(imp, "go.etcd.io/") {
				t.Errorf("%s imports %s; only internal/controller/store may use etcd", pkg, imp)
			}
		}
	}
}

// TestFunctionLength: no non-test function is longer than 100 lines (benchmark mains excepted): a longer
// one does several jobs and hides its error paths.
func TestFunctionLength(t *testing.T) {
	const max = 100
	base := root(t)
	err := filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "bin" || strings.HasPrefix(rel, "cmd/ovbench-") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		fs := token.NewFileSet()
		f, err := parser.ParseFile(fs, p, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			start, end := fs.Position(fd.Pos()).Line, fs.Position(fd.End()).Line
			if n := end - start + 1; n > max {
				t.Errorf("%s:%d: %s is %d lines (at most %d): split it into named steps", rel, start, fd.Name.Name, n, max)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestModTidy: go.mod lists exactly the modules ov uses, the ones it imports as direct requirements.
func TestModTidy(t *testing.T) {
	cmd := exec.Command("go", "mod", "tidy", "-diff")
	cmd.Dir = root(t)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("go mod tidy -diff: %v\n%s\nrun go mod tidy", err, out)
	}
}
