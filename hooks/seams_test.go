package hooks

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestMochiInternalsOnlyInMochiGo keeps every direct use of mochi's
// internals in mochi.go (the broker type), so that a mochi upgrade audits
// one file: the other files of the package reach a client's state, the
// server's registries and its write path only through broker. A client's
// public fields (ID, Properties, Net) and the hook interface are not
// internals.
func TestMochiInternalsOnlyInMochiGo(t *testing.T) {
	internals := map[string]bool{
		"State": true, "Topics": true, "Clients": true, "Info": true,
		"WritePacket": true, "DisconnectClient": true, "UnsubscribeClient": true, "ClearInflights": true,
		"Publish": true, "InjectPacket": true, "RetainMessage": true,
	}
	files, err := filepath.Glob("*.go")
	must(t, err, "glob")
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if name == "mochi.go" || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		must(t, err, "parse "+name)
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok || !internals[sel.Sel.Name] {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); ok && (pkg.Name == "packets" || pkg.Name == "mqtt") {
				return true // a constant or type (packets.Publish), not the server's
			}
			if x, ok := sel.X.(*ast.SelectorExpr); ok && x.Sel.Name == "log" && sel.Sel.Name == "Info" {
				return true // slog's Info
			}
			// broker's own methods have lower-case names; a selector of
			// one of mochi's exported internals is a direct use.
			t.Errorf("%s: %s used outside mochi.go: go through broker", fset.Position(sel.Pos()), sel.Sel.Name)
			return true
		})
	}
	if checked < 10 {
		t.Fatalf("checked %d files: the test is not looking at the package", checked)
	}
}
