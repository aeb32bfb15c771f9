package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/testutil/socktest"
)

// A backend that answers a 200 head at once and then neither reads the
// rest of the request body nor sends anything held the request until
// timeouts.first_byte: the lean client writes on after a 2xx head (a
// full-duplex backend reads on) and returns the head only once the body
// is written. A body the backend takes nothing of for timeouts.stream_idle
// fails the request as a silent answer does: 504 upstream_timeout, the
// backend counted as failed (ejected at health.max_fails 1).
func TestBackendThatStopsReadingTheBodyIsCutAtStreamIdle(t *testing.T) {
	holding := make(chan struct{})
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex() // the 200 goes out with the body unread
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		rc.Flush()
		select { // reads nothing, sends nothing
		case <-holding:
		case <-r.Context().Done():
		}
	}))
	be.Listener = socktest.SmallReceiveBuffer{Listener: be.Listener}
	be.Start()
	defer be.Close()
	defer close(holding) // before the server's Close waits for the handler
	cfg := testConfig(be.URL)
	cfg.MaxBodyBytes = 32 << 20
	cfg.Timeouts.FirstByte = config.Duration(10 * time.Minute) // the old code's wait: past the hang guard
	cfg.Timeouts.StreamIdle = config.Duration(100 * time.Millisecond)
	cfg.Health.MaxFails = 1
	cfg.Health.FailTimeout = config.Duration(time.Minute)
	cfg.Retry.Attempts = 1
	srv, gw := startGateway(t, cfg)
	// More than the kernel buffers between the gateway and the backend
	// hold (the gateway's send buffer autotunes to 4 MiB at most).
	body := `{"model":"m1","messages":[{"role":"user","content":"` + strings.Repeat("x", 16<<20) + `"}]}`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // the hang guard
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, code, msg := apiErr(t, string(b))
	if resp.StatusCode != http.StatusGatewayTimeout || code != "upstream_timeout" || !strings.Contains(msg, "request body") {
		t.Fatalf("got %d %s %q, want 504 upstream_timeout naming the request body", resp.StatusCode, code, msg)
	}
	if st := gw.Runtime().Pools["m1"].Backends[0].State(time.Now()).String(); st != "ejected" {
		t.Fatalf("backend state %s, want ejected: a stalled send is a backend failure", st)
	}
}
