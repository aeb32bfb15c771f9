package config

import (
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
