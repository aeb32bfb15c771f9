package scrape

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// The "scrape failing" line's error names the cause in a few stable words;
// it had Go's text (`scrape http://127.0.0.1:PORT/metrics: Get
// "http://127.0.0.1:PORT/metrics": dial tcp ...: connect: connection
// refused`, the URL twice), which is kept in detail.
func TestFailingLineNamesTheCause(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // nothing listens there
	unwell := newFakeServer(t, "")
	unwell.set(http.StatusServiceUnavailable, "")
	notMetrics := newFakeServer(t, "<html>hello</html>")
	tooLong := newFakeServer(t, strings.Repeat("# comment\n", 20))
	for _, tc := range []struct {
		name, url, want string
		maxBody         int64
	}{
		{"refused", gone.URL, "connection refused", 0},
		{"status", unwell.URL, "status 503", 0},
		{"not metrics", notMetrics.URL, "no queue metrics in the answer", 0},
		{"too long", tooLong.URL, "answer over 100 bytes", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t, tc.url, "")
			var buf logbuf.Buffer
			s := NewScraper(Config{MaxBody: tc.maxBody}, newClient(t), slog.New(slog.NewJSONHandler(&buf, nil)))
			s.ScrapeOnce(t.Context(), []*endpoint.Backend{b})
			buf.CheckFailureLine(t, "backend metrics scrape failing", tc.want, tc.url)
		})
	}
}
