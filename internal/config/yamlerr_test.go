package config

import (
	"os"
	"path/filepath"
	"testing"
)

// What `sluice check` and `sluice serve --config` print for a file the YAML
// library refuses or that is not a section of keys: FILE:LINE: and the
// problem in the file's terms, never the library's stages or Go types
// ("go-yaml load error in scanner", "yaml: construct errors",
// "<unknown position>") and never an empty key path ("FILE:1: : ...").
func TestYAMLProblemsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"tab", "listen: 127.0.0.1:8080\nmodels:\n\t- name: m\n",
			"F:3: a tab where YAML wants spaces (indent with spaces, never tabs)"},
		{"duplicate", minimal + "listen: ':9'\nlisten: ':10'\n",
			`F:7: mapping key "listen" already defined at line 6`},
		{"unclosed", "models: [{name: m\n",
			"F:2: YAML syntax: did not find expected ',' or '}' (column 1)"},
		{"list", "- a\n- b\n",
			"F:1: the file must be a section of keys (listen:, models:, ...), got a list"},
		{"empty", "",
			"F: models: at least one model is required"},
		{"comments only", "# nothing yet\n",
			"F: models: at least one model is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "F")
			if err := os.WriteFile(p, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Chdir(dir)
			_, err := Load("F")
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}

// A negative rate_limits.max_keys is refused naming the key and what is
// allowed (it silently meant the default, 100000).
func TestNegativeMaxKeysRefused(t *testing.T) {
	_, err := Parse([]byte(minimal + "rate_limits: {max_keys: -1}\n"))
	want := "line 6: rate_limits.max_keys: must be >= 0 (0 or unset: 100000), got -1"
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	if _, err := Parse([]byte(minimal + "rate_limits: {max_keys: 0}\n")); err != nil {
		t.Fatalf("0 (the default) refused: %v", err)
	}
}
