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

// A password holding a character url.Parse stops at ('/', '?', '#') is
// neither shown whole (the redactor stopped there too) nor in part by
// url.Parse's cause ("invalid port \":s3cret\" after host" for
// "s3cret/PW", measured through `sluice check`): the error says to
// percent-encode it.
func TestBackendURLPasswordWithDelimitersHidden(t *testing.T) {
	for _, u := range []string{"http://user:s3cret/PW@127.0.0.1:1", "http://user:s3cret#PW@h:1", "http://user:s3cret?PW@h:1", "http://:s3cret/PW@h:1/v1"} {
		_, err := New(Spec{URL: u}, HealthPolicy{})
		if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "PW") || !strings.Contains(err.Error(), "percent-encoded") {
			t.Errorf("New(%q): %v, want an error without the password", u, err)
		}
	}
}
