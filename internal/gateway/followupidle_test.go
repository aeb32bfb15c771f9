package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// TestFollowUpStreamEndsOnIdle: a relayed follow-up stream (GET
// /v1/responses/{id}?stream=true) whose backend sends the head and one
// event, then goes silent, is ended at timeouts.stream_idle with the
// Responses stream's in-band error event, as an inference stream is; it
// used to hold the client until timeouts.total (here an hour's bound is
// cut to 30s, so the old code fails the test rather than hang it).
func TestFollowUpStreamEndsOnIdle(t *testing.T) {
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/responses/") {
			return // a health check: 200
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0}\n\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // silent until the gateway gives up
	}))
	t.Cleanup(silent.Close)
	cfg := testConfig(silent.URL)
	cfg.Timeouts.StreamIdle = config.Duration(100 * time.Millisecond)
	cfg.Timeouts.Total = config.Duration(30 * time.Second)
	srv, _ := startGateway(t, cfg)
	resp, err := http.Get(srv.URL + "/v1/responses/resp_silent?stream=true")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "event: response.created\n") {
		t.Fatalf("status %d body %q: want the backend's head and first event relayed", resp.StatusCode, body)
	}
	if !strings.Contains(body, "event: error\ndata: {\"type\":\"error\",\"code\":\"upstream_idle_timeout\"") {
		t.Fatalf("body %q: want the stream ended by the idle bound with a Responses error event", body)
	}
}
