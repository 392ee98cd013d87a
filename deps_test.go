package main

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules keeps the dependency arrows pointing one way:
// httpapi → (consensus, watchers, leases) → storage → api. The middle
// packages never import each other; server and main wire them.
func TestImportRules(t *testing.T) {
	allowed := map[string][]string{
		"cairn/api":       {},
		"cairn/storage":   {"cairn/api"},
		"cairn/consensus": {"cairn/api", "cairn/storage"},
		"cairn/watchers":  {"cairn/api"},
		"cairn/leases":    {"cairn/api", "cairn/storage"},
		"cairn/httpapi":   {"cairn/api", "cairn/storage"},
		"cairn/client":    {"cairn/api"},
		"cairn/bench":     {},
		// The client port's lean HTTP/1.1 server knows nothing of Cairn.
		"cairn/internal/leanhttp": {},
		// The linearizability checker drives members through the client.
		"cairn/internal/lincheck": {"cairn/api", "cairn/client"},
		// The deterministic simulation drives consensus cores over storage.
		"cairn/internal/testcluster": {"cairn/api", "cairn/consensus", "cairn/storage"},
	}
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rules, ok := allowed[p.ImportPath]
		if !ok {
			continue
		}
		seen++
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, "cairn/") && imp != "cairn" {
				continue
			}
			permitted := false
			for _, a := range rules {
				if imp == a {
					permitted = true
				}
			}
			if !permitted {
				t.Errorf("%s must not import %s", p.ImportPath, imp)
			}
		}
	}
	if seen != len(allowed) {
		t.Fatalf("checked %d packages, expected %d: a package was renamed?", seen, len(allowed))
	}
}
