package app

import (
	"path/filepath"
	"strings"
	"testing"
)

// Load validates once, routing policy names included, and names the
// file, line and key of each problem; what it returns, Build takes as is.
func TestLoadChecksPoliciesWithFileAndLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(policy string) {
		t.Helper()
		src := "models:\n  - name: m1\n    policy: " + policy + "\n    backends: [{url: http://127.0.0.1:9001}]\n"
		writeFile(t, p, src)
	}
	write("fastest")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p+`:3: models[0].policy: unknown policy "fastest"`) {
		t.Fatalf("want FILE:LINE: key.path: problem, got %v", err)
	}
	write("round_robin")
	cfg, err := Load(p)
	if err != nil || !cfg.Checked() {
		t.Fatalf("Load: %v, checked %v", err, cfg.Checked())
	}
}
