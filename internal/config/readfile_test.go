package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A config file over MaxFileBytes is refused before it is parsed, naming
// the file, its size and the bound. On the old loader it was read and
// parsed whole (here: a file of comments, refused only for its missing
// models).
func TestLoadRefusesAnOversizedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.yaml")
	line := "# " + strings.Repeat("x", 61) + "\n" // 64 bytes
	data := strings.Repeat(line, MaxFileBytes/len(line)) + "#\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if !errors.Is(err, ErrFileTooLarge) {
		t.Fatalf("Load of a %d-byte file: %v; want ErrFileTooLarge", len(data), err)
	}
	for _, want := range []string{path, fmt.Sprintf("%d bytes", MaxFileBytes+2), fmt.Sprintf("bound of %d bytes", MaxFileBytes)} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not name %q", err, want)
		}
	}
	// At the bound, the file is read and parsed.
	if err := os.WriteFile(path, []byte(data[:MaxFileBytes]), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); errors.Is(err, ErrFileTooLarge) {
		t.Fatalf("Load at the bound: %v", err)
	}
}
