package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
)

// FuzzControlHeaders: whatever a client sends, the control headers either
// parse into values in range or are refused with a 400 naming the header.
func FuzzControlHeaders(f *testing.F) {
	for _, s := range []string{"", "batch", "Interactive", "1500", "1.5s", "-1s", "0", "respond-async", "respond-async=1",
		`foo="a,respond-async"`, "wait=5, respond-async", "respond-async junk", `"unterminated, respond-async`, "2562048h", "true", "FALSE", "yes"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		class, asked, perr := parsePriority(v)
		switch {
		case perr != nil:
			if perr.Status != http.StatusBadRequest || perr.Param != headerPriority {
				t.Fatalf("priority %q: %+v", v, perr)
			}
		case asked && class != admission.Interactive && class != admission.Batch:
			t.Fatalf("priority %q gave class %v", v, class)
		case !asked && strings.TrimSpace(v) != "" && v != "":
			t.Fatalf("priority %q neither read nor refused", v)
		}
		d, werr := parseMaxWait(v)
		if werr != nil {
			if werr.Param != headerMaxWait {
				t.Fatalf("max-wait %q: %+v", v, werr)
			}
		} else if d < 0 || d > maxWaitLimit || (d == 0 && strings.TrimSpace(v) != "") {
			t.Fatalf("max-wait %q read as %v", v, d)
		}
		on, prerr := parseProgress(v)
		switch v := strings.TrimSpace(v); {
		case prerr != nil && (prerr.Param != headerProgress || v == "" || v == "1" || v == "0"):
			t.Fatalf("progress %q: %+v", v, prerr)
		case on && v != "1" && !strings.EqualFold(v, "true"):
			t.Fatalf("progress %q read as on", v)
		}
		async, aerr := parsePrefer([]string{v})
		if aerr != nil {
			if aerr.Param != headerPrefer {
				t.Fatalf("prefer %q: %+v", v, aerr)
			}
			if !strings.Contains(strings.ToLower(v), "respond-async") {
				t.Fatalf("prefer %q refused without a respond-async in it", v)
			}
		}
		if async && !strings.Contains(strings.ToLower(v), "respond-async") {
			t.Fatalf("prefer %q read as respond-async", v)
		}
		// A deadline from any header is within the objective.
		r, _ := http.NewRequest("POST", "/", nil)
		r.Header.Set(headerMaxWait, v)
		start := time.Unix(0, 0)
		until, latest, _ := deadline(r, start, 2*time.Second, 100*time.Millisecond, 0)
		if until.Before(start) || latest.Before(until) || latest.Sub(start) > 2*time.Second {
			t.Fatalf("max-wait %q: until %v latest %v", v, until.Sub(start), latest.Sub(start))
		}
	})
}

// FuzzBearerAndETag: the bearer key is trimmed and never contains the
// scheme; If-None-Match never panics and matches the ETag itself.
func FuzzBearerAndETag(f *testing.F) {
	for _, s := range []string{"Bearer sk-1", "bearer  x ", "Basic abc", "Bearer", `"abc", W/"def"`, "*", `W/`, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		k := bearer(h)
		if k != strings.TrimSpace(k) {
			t.Fatalf("bearer(%q) = %q, not trimmed", h, k)
		}
		if k != "" && !strings.EqualFold(h[:7], "bearer ") {
			t.Fatalf("bearer(%q) = %q without the Bearer scheme", h, k)
		}
		etag := `"0123abcd"`
		if !etagMatches(h+", "+etag, etag) {
			t.Fatalf("If-None-Match %q, %s does not match %s", h, etag, etag)
		}
		etagMatches(h, etag)
	})
}
