package gateway

import (
	"net/http"
	"net/textproto"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzRequestHeaders: the one pass over a small header map (walk) and the
// lookups read (lookup) gather the same headers from any request, with
// repeated, empty and odd values: which one read runs depends only on the
// map's size, never on what the client sent.
func FuzzRequestHeaders(f *testing.F) {
	f.Add("Authorization: Bearer a\nAuthorization: Bearer b\nX-Sluice-Priority: batch\nPrefer: respond-async\nPrefer: wait=5\nContent-Encoding: gzip\n")
	f.Add("X-Request-Id:\nCache-Control: no-store\nX-Sluice-Job-Tenant: t\nUser-Agent: u\nX-Sluice-Max-Wait: 5s\nX-Sluice-Progress: 1\n")
	f.Add("authorization: basic x\nX-Other: 1\n")
	f.Fuzz(func(t *testing.T, lines string) {
		h := http.Header{}
		for _, l := range strings.Split(lines, "\n") {
			k, v, _ := strings.Cut(l, ":")
			h[textproto.CanonicalMIMEHeaderKey(k)] = append(h[textproto.CanonicalMIMEHeaderKey(k)], strings.TrimSpace(v))
		}
		var walked, looked requestHeaders
		walked.walk(h)
		looked.lookup(h)
		if !reflect.DeepEqual(walked, looked) {
			t.Fatalf("headers %q:\nwalk   %+v\nlookup %+v", h, walked, looked)
		}
	})
}

// FuzzRetryAfterOf: whatever Retry-After and Retry-After-Ms an answer
// carries (a backend's, relayed), the wait the demand meter counts is
// between 0 and a day, and a whole number of seconds within that range
// is read as written.
func FuzzRetryAfterOf(f *testing.F) {
	f.Add("", "120")
	f.Add("1500", "2")
	f.Add("-5", "86400")
	f.Add("9223372036854775807", "1e3")
	f.Fuzz(func(t *testing.T, ms, secs string) {
		h := http.Header{}
		if ms != "" {
			h.Set("Retry-After-Ms", ms)
		}
		h.Set("Retry-After", secs)
		d := retryAfterOf(h)
		if d < 0 || d >= 24*time.Hour {
			t.Fatalf("Retry-After-Ms %q, Retry-After %q: %v", ms, secs, d)
		}
		if n, err := strconv.Atoi(secs); ms == "" && err == nil && n > 0 && n < 86400 && d != time.Duration(n)*time.Second {
			t.Fatalf("Retry-After %q read as %v", secs, d)
		}
	})
}
