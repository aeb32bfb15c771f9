package dashboard_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sluice-gw/sluice/internal/dashboard"
)

// scriptedStatus serves the page and a /status/stream the test drives:
// its first connection is refused as a gateway with every watcher place
// taken refuses it, the next waits for release, then relays each
// document sent on events.
type scriptedStatus struct {
	conns   atomic.Int32
	release chan struct{}
	events  chan string
}

func (s *scriptedStatus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if dashboard.Serve(w, r) {
		return
	}
	if r.URL.Path != "/status/stream" {
		http.NotFound(w, r)
		return
	}
	if s.conns.Add(1) == 1 {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":{"message":"too many /status/stream watchers are open; close one or poll /status","type":"server_error","code":"too_many_watchers"}}`)
		return
	}
	select {
	case <-s.release:
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	for {
		select {
		case doc := <-s.events:
			fmt.Fprintf(w, "event: status\ndata: %s\n\n", doc)
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
			return
		}
	}
}

func statusEvent(at time.Time) string {
	return fmt.Sprintf(`{"time":%q,"models":[],"cache":{"enabled":false},"jobs":{"enabled":false},"forecast":null,`+
		`"readiness":{"ready":true,"waiting_for":[]}}`, at.UTC().Format(time.RFC3339Nano))
}

// The header tells the operator whether the numbers are current. A
// refused stream says why (the gateway's error message, not only "HTTP
// 503"); a stream that goes quiet is marked stale after 5 s; and when
// events come again on the same stream (a paused gateway, a slow
// /status) the header says live again. Before, it said "stale: no update
// for 6 s" for good over numbers that were live again, and a refusal only
// "reconnecting (HTTP 503)".
func TestDashboardHeaderFollowsTheStream(t *testing.T) {
	s := &scriptedStatus{release: make(chan struct{}), events: make(chan string)}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close) // after the browser's, which ends the stream it holds
	tab, problems := browser(t)
	if err := chromedp.Do(tab, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	const conn = `document.getElementById("conn").textContent`
	until(t, tab, problems, "the refusal's reason in the header",
		conn+` === "reconnecting (HTTP 503: too many /status/stream watchers are open; close one or poll /status)"`)
	close(s.release)
	now := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	s.events <- statusEvent(now)
	until(t, tab, problems, "live", conn+` === "live" && document.getElementById("conn").dataset.events === "1"`)
	// No event for over 5 s (the page's own clock): stale.
	until(t, tab, problems, "marked stale", conn+`.startsWith("stale: no update for")`)
	s.events <- statusEvent(now.Add(7 * time.Second))
	until(t, tab, problems, "live again once events resume", conn+` === "live" && document.getElementById("conn").dataset.events === "2"`)
	for _, p := range problems() {
		// The refused connection is logged by the browser; nothing else may be.
		if !strings.Contains(p, "503 (Service Unavailable)") {
			t.Errorf("the page logged: %s", p)
		}
	}
}
