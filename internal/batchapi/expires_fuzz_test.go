package batchapi

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
)

// FuzzUploadExpiresAfter: whatever an upload's expires_after form fields
// hold, the lifetime is within OpenAI's bounds, or the answer is a 400
// naming one of the two fields, its message bounded (the value is
// echoed cut, openai.Echo) and free of Go's words.
func FuzzUploadExpiresAfter(f *testing.F) {
	f.Add("created_at", "3600", true, true)
	f.Add("created_at", "2592001", true, true)
	f.Add("last_active_at", "+3600", true, false)
	f.Add("", "0x10", false, true)
	f.Add(strings.Repeat("é", 300), "99999999999999999999", true, true)
	f.Fuzz(func(t *testing.T, anchor, seconds string, hasAnchor, hasSeconds bool) {
		fields := map[string]string{}
		if hasAnchor {
			fields[anchorField] = anchor
		}
		if hasSeconds {
			fields[secondsField] = seconds
		}
		d, err := uploadExpiresAfter(fields)
		if err == nil {
			if d < minExpiresSeconds*time.Second || d > maxExpiresSeconds*time.Second || anchor != expiresAnchor {
				t.Fatalf("accepted %q %q as %v", anchor, seconds, d)
			}
			return
		}
		var e *openai.Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.HasPrefix(e.Param, "expires_after.") {
			t.Fatalf("refusal %#v", err)
		}
		// Echo cuts the value at MaxEcho bytes; quoting writes a byte as at
		// most 4 (\xad): a 14 KB anchor of such bytes is a 1.1 KB message.
		if len(e.Message) > 4*openai.MaxEcho+300 || strings.Contains(e.Message, "strconv") || strings.Contains(e.Message, "int64") {
			t.Fatalf("message %q", e.Message)
		}
	})
}
