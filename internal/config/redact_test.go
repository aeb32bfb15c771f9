package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A backend URL's password is not echoed by the error that refuses the
// URL: the message goes to the terminal, the log and CI output.
func TestBackendURLErrorHidesPassword(t *testing.T) {
	_, err := Parse([]byte("models:\n  - name: m\n    backends:\n      - url: \"ftp://user:s3cretPW@127.0.0.1:1/\"\n"))
	if err == nil || strings.Contains(err.Error(), "s3cretPW") || !strings.Contains(err.Error(), "user:xxxxx@") {
		t.Fatalf("error %v: want the URL with its password hidden", err)
	}
}

func TestRedactEnv(t *testing.T) {
	t.Setenv("RT_PASS", "hunter22")
	t.Setenv("RT_LONG", "hunter22-and-more")
	t.Setenv("RT_SHORT", "on")
	path := filepath.Join(t.TempDir(), "c.yaml")
	src := "a: ${RT_PASS}\nb: $RT_LONG\nc: ${RT_SHORT}\nd: ${RT_UNSET:-defaultval}\ne: $$RT_PASS\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	for msg, want := range map[string]string{
		`c.yaml:1: a: invalid duration "hunter22"`:   `c.yaml:1: a: invalid duration "${RT_PASS}"`,
		`c.yaml:2: b: bad url "hunter22-and-more"`:   `c.yaml:2: b: bad url "$RT_LONG"`, // the longer value whole
		`c.yaml:3: c: "on" is not a number`:          `c.yaml:3: c: "on" is not a number`,
		`c.yaml:4: d: invalid duration "defaultval"`: `c.yaml:4: d: invalid duration "${RT_UNSET}"`,
	} {
		if got := RedactEnv(path, msg); got != want {
			t.Errorf("RedactEnv(%q) = %q, want %q", msg, got, want)
		}
	}
	if got := RedactEnv(filepath.Join(t.TempDir(), "gone.yaml"), "x hunter22"); got != "x hunter22" {
		t.Errorf("a file gone: %q", got)
	}
}

// A URL written where another type belongs (a Redis URL for addrs, which
// wants a list of host:port) is quoted by its refusal with the password
// hidden: the refusal reaches the log and the admin /status
// (config.last_refusal). Before, `addrs: "redis://u:REDISPW@x"` was
// refused as `want a list, got "redis://u:REDISPW@x"`.
func TestTypeRefusalHidesURLPassword(t *testing.T) {
	for _, src := range []string{
		"cache:\n  redis:\n    addrs: \"redis://u:REDISPW-abc@redis.internal:6379\"\nmodels:\n  - name: m\n    backends: [{url: \"http://127.0.0.1:1\"}]\n",
		"cache:\n  redis:\n    timeout: \"redis://u:REDISPW-abc@redis.internal:6379\"\nmodels:\n  - name: m\n    backends: [{url: \"http://127.0.0.1:1\"}]\n",
		"max_body_bytes: \"redis://u:REDISPW-abc@redis.internal:6379\"\nmodels:\n  - name: m\n    backends: [{url: \"http://127.0.0.1:1\"}]\n",
		"cache:\n  redis:\n    db: \"redis://averylongusername-to-pass-the-cut:REDISPW-abc@redis.internal:6379\"\nmodels:\n  - name: m\n    backends: [{url: \"http://127.0.0.1:1\"}]\n",
	} {
		_, err := Parse([]byte(src))
		if err == nil || strings.Contains(err.Error(), "REDISPW") || !strings.Contains(err.Error(), ":xxxxx@") && !strings.Contains(err.Error(), "...") {
			t.Errorf("error %v: want the value quoted with its password hidden", err)
		}
		if err != nil && strings.Contains(err.Error(), "REDIS") {
			t.Errorf("error %v names part of the password", err)
		}
	}
}
