package auth

import (
	"encoding/base64"
	"strings"
	"testing"
)

// FuzzPeekIssuer: whatever the bearer, peekIssuer returns an error or the
// iss string the payload holds, never panics, and accepts only three
// segments whose payload decodes.
func FuzzPeekIssuer(f *testing.F) {
	enc := base64.RawURLEncoding.EncodeToString
	f.Add("e30." + enc([]byte(`{"iss":"https://a/"}`)) + ".sig")
	f.Add("e30." + enc([]byte(`{"iss":1}`)) + ".")
	f.Add("..")
	f.Add("a.b.c.d")
	f.Fuzz(func(t *testing.T, token string) {
		iss, err := peekIssuer(token)
		if err != nil {
			if iss != "" {
				t.Fatalf("error %v with iss %q", err, iss)
			}
			return
		}
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted %d segments", len(parts))
		}
		if _, derr := base64.RawURLEncoding.Strict().DecodeString(parts[1]); derr != nil {
			t.Fatalf("accepted an undecodable payload: %v", derr)
		}
	})
}
