// Package parley_test holds tests of the repository as a whole.
package parley_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/parleychat/parley"

// layers says which of Parley's packages each package may not depend on,
// directly or through others: the wire contract stands alone, the stores
// know nothing of how messages travel, push knows nothing of MQTT, and
// the load tester sees Parley only from outside, through the protocol.
// A key ending in "/..." covers the package and those below it.
var layers = []struct {
	pkg       string
	forbidden []string
	stdOnly   bool // no third-party imports either
}{
	{pkg: "storage", forbidden: []string{"storage/postgres/...", "storage/sqlite"}},
	{pkg: "protocol", forbidden: []string{"..."}, stdOnly: true},
	{pkg: "internal/testwait", forbidden: []string{"..."}, stdOnly: true},
	{pkg: "storage/...", forbidden: []string{"hooks", "broker/...", "api", "push/...", "groups", "auth", "cmd/..."}},
	{pkg: "push/...", forbidden: []string{"hooks", "broker/...", "api", "groups", "auth", "cmd/..."}},
	{pkg: "hooks", forbidden: []string{"broker/...", "api", "push/...", "groups", "cluster", "cmd/..."}},
	{pkg: "cluster", forbidden: []string{"storage/...", "hooks", "broker/...", "api", "push/...", "groups", "auth", "cmd/..."}},
	{pkg: "auth", forbidden: []string{"hooks", "broker/...", "api", "groups", "push/...", "cmd/..."}},
	{pkg: "groups", forbidden: []string{"hooks", "broker/...", "api", "push/...", "cmd/..."}},
	{pkg: "api", forbidden: []string{"hooks", "broker/...", "cmd/..."}},
	{pkg: "broker", forbidden: []string{"cmd/..."}},
	{pkg: "loadtest/...", forbidden: []string{"storage/...", "hooks", "broker/...", "api", "auth", "groups", "push/...", "cmd/..."}},
}

// matches reports whether package path p (relative to the module) is
// covered by pattern: "..." alone covers every package of the module.
func matches(pattern, p string) bool {
	switch {
	case pattern == "...":
		return true
	case strings.HasSuffix(pattern, "/..."):
		base := strings.TrimSuffix(pattern, "/...")
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == pattern
}

// TestPackageLayers enforces layers on the packages' transitive
// (non-test) dependencies, as `go list -deps` reports them.
func TestPackageLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	std := map[string]bool{}
	stdOut, err := exec.Command("go", "list", "std").Output()
	if err != nil {
		t.Fatalf("go list std: %v", err)
	}
	for _, p := range strings.Fields(string(stdOut)) {
		std[p] = true
	}
	checked := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], module+"/") {
			continue
		}
		pkg := strings.TrimPrefix(f[0], module+"/")
		for _, l := range layers {
			if !matches(l.pkg, pkg) {
				continue
			}
			checked++
			for _, dep := range f[1:] {
				if !strings.HasPrefix(dep, module+"/") {
					if l.stdOnly && !std[dep] && !strings.HasPrefix(dep, "internal/") && !strings.HasPrefix(dep, "vendor/") {
						t.Errorf("%s imports %s: it may import the standard library only", pkg, dep)
					}
					continue
				}
				d := strings.TrimPrefix(dep, module+"/")
				for _, bad := range l.forbidden {
					if matches(bad, d) && !matches(l.pkg, d) {
						t.Errorf("%s depends on %s (rule: %s must not depend on %s)", pkg, d, l.pkg, bad)
					}
				}
			}
		}
	}
	if checked < len(layers) {
		t.Fatalf("only %d packages matched the %d rules: the layout changed, update the rules", checked, len(layers))
	}
}
