package health

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// The "backend down" line's error names the cause in a few stable words
// ("connection refused", "status 503"); it had Go's text (`Get
// "http://127.0.0.1:PORT/health": dial tcp 127.0.0.1:PORT: connect:
// connection refused`), which is kept in detail.
func TestBackendDownLineNamesTheCause(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // nothing listens there
	unwell := newFakeServer(t)
	unwell.status.Store(http.StatusServiceUnavailable)
	for _, tc := range []struct {
		name, url, want string
	}{
		{"refused", gone.URL, "connection refused"},
		{"status", unwell.URL, "status 503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t, tc.url, "")
			var buf logbuf.Buffer
			c := NewChecker(Config{Timeout: healthyProbeBound, Fails: 1}, newClient(t), slog.New(slog.NewJSONHandler(&buf, nil)))
			c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
			buf.CheckFailureLine(t, "backend down", tc.want, tc.url)
			// The same words stay on the backend for /status's "why".
			if got := b.ProbeCause(); got != tc.want {
				t.Errorf("ProbeCause() = %q, want %q", got, tc.want)
			}
		})
	}
}
