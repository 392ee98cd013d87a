package httpapi

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportRules enforces DESIGN §1.2 for this package: no Pebble, no raft,
// and storage only for its Cmd type and Op constants.
func TestImportRules(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	allowedPrefixes := []string{"cairn/api", "cairn/storage", "github.com/go-chi/chi/v5", "github.com/prometheus/client_golang/"}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			first := strings.SplitN(p, "/", 2)[0]
			if !strings.Contains(first, ".") && !strings.HasPrefix(p, "cairn/") {
				continue // standard library
			}
			ok := false
			for _, a := range allowedPrefixes {
				if p == a || strings.HasPrefix(p, a) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s", name, p)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == "storage" {
				if s := sel.Sel.Name; s != "Cmd" && !strings.HasPrefix(s, "Op") {
					t.Errorf("%s: uses storage.%s (only Cmd and Op* are allowed)", fset.Position(sel.Pos()), s)
				}
			}
			return true
		})
	}
}
