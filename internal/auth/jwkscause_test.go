package auth_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// The "key set fetch failed" warning's error names the cause in a few
// stable words ("connection refused", "status 503"), as the probe's and
// scrape's lines do; it had Go's text (`failed to create HTTP client
// storage for "http://127.0.0.1:PORT/jwks": ...: connect: connection
// refused`), which is kept in detail.
func TestKeySetFetchFailedLineNamesTheCause(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // nothing listens there
	unwell := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(unwell.Close)
	for _, tc := range []struct{ name, url, want, detail string }{
		{"refused", gone.URL + "/jwks", "connection refused", "connect: connection refused"},
		{"status", unwell.URL + "/jwks", "status 503", "invalid HTTP status code: 503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf logbuf.Buffer
			s := auth.JWKSSettings{URL: tc.url, Refresh: time.Hour, MinRefresh: time.Hour, Timeout: 30 * time.Second, MaxBytes: 1 << 20}
			jwks := auth.NewJWKS(s, slog.New(slog.NewJSONHandler(&buf, nil)), nil)
			jwks.Close() // after the first fetch, which NewJWKS waits for
			var line struct{ Msg, Error, Detail string }
			if err := json.Unmarshal([]byte(strings.TrimSpace(buf.String())), &line); err != nil {
				t.Fatalf("%v: %s", err, buf.String())
			}
			if !strings.HasPrefix(line.Msg, "jwt: key set fetch failed") || line.Error != tc.want {
				t.Errorf("line %q error %q, want \"jwt: key set fetch failed...\" and %q", line.Msg, line.Error, tc.want)
			}
			if !strings.Contains(line.Detail, tc.detail) {
				t.Errorf("detail %q: want Go's text (%q)", line.Detail, tc.detail)
			}
		})
	}
}
