package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A key shorter than 20 characters, or one whose characters repeat as a
// random key's do not, is warned about with the file, its line and key
// path, never quoted; the file still loads, and a random key (hex or
// wider, 20 characters and more) is not warned about. Before, nothing
// said that such a key's unsalted digest (key:<hash>, Redis bucket names)
// can be matched against a dictionary.
func TestWeakAPIKeyIsWarnedNeverQuoted(t *testing.T) {
	const weak = "password"
	const patterned = "sk-aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	src := "auth:\n  require_key: true\n  keys:\n" +
		"    - {key: 3f9c2a7e1b84d05f6a2c9e1d7b3048f5, tenant: good}\n" + // line 4
		"    - {key: " + weak + ", tenant: short}\n" + // line 5
		"    - {key: " + patterned + ", tenant: flat}\n" + // line 6
		"    - {key: q7Zp2LmX9vRt4KcW1nHy, tenant: b64}\n" + // line 7: 20 characters, random
		minimal
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Warnings()
	if len(w) != 2 {
		t.Fatalf("warnings %q, want two (keys 1 and 2)", w)
	}
	for i, want := range []string{
		path + ":5: auth.keys[1].key: the key is shorter than 20 characters",
		path + ":6: auth.keys[2].key: the key's characters repeat",
	} {
		if !strings.HasPrefix(w[i], want) || !strings.Contains(w[i], "openssl rand -hex 24") {
			t.Errorf("warning %d = %q, want it to start %q and say how to make a key", i, w[i], want)
		}
		if strings.Contains(w[i], weak) || strings.Contains(w[i], patterned) || strings.Contains(w[i], KeyRef(weak)) || strings.Contains(w[i], KeyRef(patterned)) {
			t.Errorf("warning %d quotes the key or its digest: %q", i, w[i])
		}
	}
}
