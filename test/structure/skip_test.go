package structure

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSkipsGoThroughTestutil: no test calls t.Skip, t.Skipf or t.SkipNow itself; every skip goes
// through internal/testutil (Skip, RequireRoot, RequireBinary, ...), which fails instead under
// OV_STRICT=1, so that CI cannot pass by skipping.
func TestSkipsGoThroughTestutil(t *testing.T) {
	top := root(t)
	fset := token.NewFileSet()
	err := filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == ".git" || n == "testdata" || path == filepath.Join(top, "internal", "testutil") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			switch sel.Sel.Name {
			case "Skip", "Skipf", "SkipNow":
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "testutil" {
					return true
				}
				t.Errorf("%s: calls %s directly; use testutil.Skip (or RequireRoot, RequireBinary, NotApplicable, SkipUnlessBench) so that OV_STRICT=1 fails instead of skipping", strings.TrimPrefix(fset.Position(sel.Pos()).String(), top+"/"), sel.Sel.Name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
