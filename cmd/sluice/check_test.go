package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/testutil/selfsigned"
)

// sluice check takes the annotated example as it is, and refuses what a
// start would stop on: a validation error with its file, line and key, and
// an error only building finds (a public key file that is no PEM), with
// its key path.
func TestCheckConfig(t *testing.T) {
	example, err := os.ReadFile("../../examples/sluice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	check := func(path string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run([]string{"check", "--config", path}, &out, &errb)
		return code, out.String(), errb.String()
	}

	ok := write("ok.yaml", string(example))
	if code, out, errs := check(ok); code != 0 || !strings.Contains(out, "is valid: 2 models") {
		t.Fatalf("example: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// A one-model file is "1 model, 1 backend", not "1 models, 1 backends".
	one := write("one.yaml", "models:\n  - name: m\n    backends: [{url: \"http://127.0.0.1:1\"}]\n")
	if code, out, errs := check(one); code != 0 || !strings.Contains(out, "is valid: 1 model, 1 backend (") {
		t.Fatalf("one model: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	lines := strings.Split(string(example), "\n")
	at := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "listen:") {
			lines[i], at = "listen: 8080", i+1
		}
	}
	badListen := write("listen.yaml", strings.Join(lines, "\n"))
	want := "listen.yaml:" + strconv.Itoa(at) + ": listen: want host:port"
	if code, _, errs := check(badListen); code != 1 || !strings.Contains(errs, want) {
		t.Fatalf("listen 8080: exit %d, stderr %q, want %q", code, errs, want)
	}

	pem := write("key.pem", "not a key\n")
	jwt := strings.Replace(string(example), "  keys: []", "  keys: []\n  jwt:\n    public_keys: [{file: "+pem+"}]\n    issuer: https://idp.example.com/\n    audience: sluice", 1)
	if code, _, errs := check(write("jwt.yaml", jwt)); code != 1 || !strings.Contains(errs, "auth.jwt.public_keys[0].file: no PEM block") {
		t.Fatalf("bad key file: exit %d, stderr %q", code, errs)
	}

	if code, _, errs := check(filepath.Join(dir, "missing.yaml")); code != 1 || errs == "" {
		t.Fatalf("missing file: exit %d, stderr %q", code, errs)
	}
}

// sluice check loads the tls: pair as a start would: a good pair passes,
// a certificate with another pair's key, or a file that is not there,
// fails naming tls.cert_file.
func TestCheckLoadsTLSPair(t *testing.T) {
	example, err := os.ReadFile("../../examples/sluice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pair, other := selfsigned.New(t, 1), selfsigned.New(t, 2)
	certFile, keyFile := pair.Write(t, dir)
	withTLS := func(name, cert, key string) string {
		text := strings.Replace(string(example), "\ntls:\n", "\ntls:\n  cert_file: "+cert+"\n  key_file: "+key+"\n", 1)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	check := func(path string) (int, string) {
		var out, errb bytes.Buffer
		return run([]string{"check", "--config", path}, &out, &errb), errb.String()
	}
	if code, errs := check(withTLS("ok.yaml", certFile, keyFile)); code != 0 {
		t.Fatalf("a good pair: exit %d, stderr %q", code, errs)
	}
	otherKey := filepath.Join(dir, "other-key.pem")
	if err := os.WriteFile(otherKey, other.Key, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, errs := check(withTLS("mismatch.yaml", certFile, otherKey)); code != 1 || !strings.Contains(errs, "tls.cert_file") ||
		!strings.Contains(errs, "private key does not match") {
		t.Fatalf("mismatched key: exit %d, stderr %q", code, errs)
	}
	if code, errs := check(withTLS("missing.yaml", filepath.Join(dir, "none.pem"), keyFile)); code != 1 || !strings.Contains(errs, "tls.cert_file") {
		t.Fatalf("missing certificate: exit %d, stderr %q", code, errs)
	}
}
