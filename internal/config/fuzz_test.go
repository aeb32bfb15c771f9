package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

func TestTenantWeightRangeChecked(t *testing.T) {
	for _, w := range []string{".nan", ".inf", "-1", "1e7"} {
		_, err := Parse([]byte("auth: {keys: [{key: k, weight: " + w + "}]}\n" + minimal))
		if err == nil || !strings.Contains(err.Error(), "auth.keys[0].weight") {
			t.Errorf("weight %s: %v, want an error naming auth.keys[0].weight", w, err)
		}
	}
	if _, err := Parse([]byte("auth: {keys: [{key: k, weight: 2.5}]}\n" + minimal)); err != nil {
		t.Fatal(err)
	}
}

// FuzzParse: any config text is either refused with an error or yields a
// config that validates again and whose YAML rendering survives a parse
// unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	if b, err := os.ReadFile(filepath.Join("..", "..", "examples", "sluice.yaml")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("listen: ':8080'\nretry: {attempts: 2}\n" + minimal))
	f.Add([]byte("auth: {keys: [{key: k, weight: 2, priority: batch}]}\n" + minimal))
	f.Add([]byte("models: [{name: m, backends: [{url: 'http://x', weight: -1}]}]\n"))
	f.Add([]byte("max_body_bytes: 1MiB\ntimeouts: {connect: 1s}\n" + minimal))
	f.Add([]byte("listen: ':1'\nlisten: ':2'\n" + minimal))
	f.Add([]byte("models:\n\t- name: m\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			// Refusals read in the file's terms, never the YAML library's
			// (a value quoted from the file may hold anything).
			for _, internal := range []string{"go-yaml", "construct errors", "unmarshal errors", "<unknown position>", "!!", "config."} {
				if strings.Contains(err.Error(), internal) && !bytes.Contains(data, []byte(internal)) {
					t.Fatalf("refusal shows the library's text %q: %v", internal, err)
				}
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed config does not validate again: %v", err)
		}
		if len(cfg.Models) == 0 {
			t.Fatal("a config without models was accepted")
		}
		out, err := yaml.Dump(cfg)
		if err != nil {
			t.Fatalf("dump: %v", err)
		}
		// Parse expands ${VAR} and $VAR; a literal '$' is written "$$".
		again, err := Parse(bytes.ReplaceAll(out, []byte("$"), []byte("$$")))
		if err != nil {
			t.Fatalf("round trip refused: %v\n%s", err, out)
		}
		// Nil and empty maps differ in memory, not in meaning: compare
		// what is written.
		out2, err := yaml.Dump(again)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the config (%v):\n%s\nthen\n%s", err, out, out2)
		}
	})
}
