package config

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TLS is off by default; set, it needs both files; min_version is 1.2 or
// 1.3, and an error names the file, the line, the key and what is allowed.
func TestTLSSection(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS.Enabled() || c.TLS.MinTLSVersion() != tls.VersionTLS12 {
		t.Fatalf("default tls: %+v, want off with min 1.2", c.TLS)
	}
	c, err = Parse([]byte("tls: {cert_file: c.pem, key_file: k.pem, min_version: 1.3}\n" + minimal))
	if err != nil {
		t.Fatal(err)
	}
	if !c.TLS.Enabled() || c.TLS.MinTLSVersion() != tls.VersionTLS13 {
		t.Fatalf("tls: %+v, want on with min 1.3", c.TLS)
	}

	dir := t.TempDir()
	for name, tc := range map[string]struct{ yaml, want string }{
		"version":  {"tls:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: \"1.1\"\n", `:4: tls.min_version: must be "1.2" or "1.3", got "1.1"`},
		"no key":   {"tls:\n  cert_file: c.pem\n", ":1: tls.key_file: must be set with tls.cert_file"},
		"no cert":  {"tls:\n  key_file: k.pem\n", ":1: tls.cert_file: must be set with tls.key_file"},
		"misspelt": {"tls:\n  certfile: c.pem\n", ":2: tls.certfile: unknown key; did you mean cert_file?"},
	} {
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(tc.yaml+minimal), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path+tc.want) {
			t.Errorf("%s: got %v, want %s%s", name, err, path, tc.want)
		}
	}
}
