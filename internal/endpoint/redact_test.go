package endpoint

import (
	"strings"
	"testing"
)

// A backend URL that does not parse is named with its password hidden;
// url.Parse's own error quoted it whole.
func TestBadBackendURLErrorHidesPassword(t *testing.T) {
	for _, u := range []string{"http://user:s3cretPW@127.0.0.1:1/%zz", "ftp://user:s3cretPW@127.0.0.1:1/", "http://user:s3cretPW@/x"} {
		_, err := New(Spec{URL: u}, HealthPolicy{})
		if err == nil || strings.Contains(err.Error(), "s3cretPW") {
			t.Errorf("New(%q): %v, want an error without the password", u, err)
		}
	}
}
