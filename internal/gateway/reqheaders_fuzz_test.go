package gateway

import (
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
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
