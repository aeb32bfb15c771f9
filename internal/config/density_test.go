package config

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A file within MaxFileBytes written densely used to be parsed whole: the
// YAML library's tree, ~200 bytes a node, took ~500 MB for 4 MiB of
// "[1,1,...]". Now it is refused before the parse, naming the file and
// the bound, having allocated little beyond the file itself.
func TestDenseFileRefusedBeforeParse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dense.yaml")
	src := "models: [" + strings.Repeat("1,", MaxNodes) + "1]\n" // ~1 MiB
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Load(path)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooManyNodes) || !strings.Contains(err.Error(), "dense.yaml") || !strings.Contains(err.Error(), "524288") {
		t.Fatalf("Load: %v, want ErrTooManyNodes naming the file and the bound", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8*uint64(len(src)) {
		t.Fatalf("allocated %d bytes for a %d-byte file: parsed before refused", alloc, len(src))
	}
}

// The reference config is far below the bound.
func TestReferenceConfigFarBelowNodeBound(t *testing.T) {
	data, err := os.ReadFile("../../examples/sluice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if n := nodeEstimate(data); n > MaxNodes/100 {
		t.Fatalf("examples/sluice.yaml: %d nodes by the estimate, within 1%% of the bound %d", n, MaxNodes)
	}
}
