package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// A non-stream answer's body is bounded between reads by
// timeouts.stream_idle, as a stream's events are: a backend that sends
// its head and part of its JSON, then nothing, is cut with 504
// upstream_idle_timeout at that bound, not held to timeouts.total. (It
// pins behaviour the backendleft audit found already there: a body
// trickling faster than stream_idle is bounded by total alone.)
func TestNonStreamBodyStalledIsCutAtStreamIdle(t *testing.T) {
	release := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		const part = `{"id":"x","object":"chat.completion","choices":[`
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(part)+100))
		io.WriteString(w, part)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer be.Close()
	defer close(release) // before Close, which waits for the handler
	cfg := testConfig(be.URL)
	cfg.Timeouts.StreamIdle = config.Duration(100 * time.Millisecond)
	cfg.Timeouts.Total = config.Duration(time.Hour)
	srv, _ := startGateway(t, cfg)
	resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
	body := readAll(t, resp)
	if _, code, _ := apiErr(t, body); resp.StatusCode != http.StatusGatewayTimeout || code != "upstream_idle_timeout" {
		t.Fatalf("status %d code %q (%.200s), want 504 upstream_idle_timeout", resp.StatusCode, code, body)
	}
}
