package auth_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
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
			buf.CheckFailureLine(t, "jwt: key set fetch failed", tc.want, tc.detail)
		})
	}
}
