package proxy

import (
	"net/url"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

func TestUpstreamQuery(t *testing.T) {
	for raw, want := range map[string]string{
		"":                              "",
		"api-version=2024-06-01":        "api-version=2024-06-01",
		"key=s":                         "",
		"key":                           "",
		"Key=s&api-version=1":           "api-version=1",
		"api-version=1&key=s&keys=kept": "api-version=1&keys=kept",
		"%6b%65%79=s&a=%2C":             "a=%2C",
		"access_token=t&stream=true":    "stream=true",
		"a=1&&b=2":                      "a=1&&b=2",
		"monkey=1;x":                    "monkey=1;x",
		"&a=1&key=s":                    "&a=1",
		"a=1&key=s&":                    "a=1&",
		"key=s&&a=1":                    "&a=1",
	} {
		if got := upstreamQuery(raw, endpoint.Spec{}); got != want {
			t.Errorf("upstreamQuery(%q) = %q, want %q", raw, got, want)
		}
		if got := upstreamQuery(raw, endpoint.Spec{PassClientAuth: true}); got != raw {
			t.Errorf("pass_client_auth: upstreamQuery(%q) = %q, want it as sent", raw, got)
		}
	}
}

// upstreamQuery drops exactly the pairs whose name, decoded, is a client
// credential, and keeps every other pair byte for byte, in order, empty
// ones included; with pass_client_auth, and for a query its quick test
// passes over, the query is unchanged.
func FuzzUpstreamQuery(f *testing.F) {
	for _, seed := range []string{"", "api-version=2024-06-01", "key=s&a=%2C", "%6B%45y=1", "&&key&", "access_token=t;a=b", "a=%zz&KEY=1"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if got := upstreamQuery(raw, endpoint.Spec{PassClientAuth: true}); got != raw {
			t.Fatalf("pass_client_auth: %q became %q", raw, got)
		}
		got := upstreamQuery(raw, endpoint.Spec{})
		if !mayHoldCredential(raw) && got != raw {
			t.Fatalf("%q, passed over by the quick test, became %q", raw, got)
		}
		var want []string
		for _, pair := range strings.Split(raw, "&") {
			name, _, _ := strings.Cut(pair, "=")
			if n, err := url.QueryUnescape(name); err == nil {
				name = n
			}
			if !strings.EqualFold(name, "key") && !strings.EqualFold(name, "access_token") {
				want = append(want, pair)
			}
		}
		if w := strings.Join(want, "&"); got != w {
			t.Fatalf("upstreamQuery(%q) = %q, want %q", raw, got, w)
		}
	})
}
