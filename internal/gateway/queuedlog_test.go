package gateway

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// A request refused after waiting in the queue has that wait on its
// access line (queued_ms), as X-Sluice-Queue-Time tells the client.
// Before, the line said queued_ms 0 for every refusal: through the
// binary, three requests refused at their 2 s deadline had
// X-Sluice-Queue-Time 1984 and queued_ms 0, so the log could not tell a
// refusal after queueing from one at arrival.
func TestRefusedAfterQueueingLogsItsWait(t *testing.T) {
	be := newHeldStreamBackend(t)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	cfg.Log.Access = true
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	reg := prometheus.NewRegistry()
	deps := Deps{Logger: log, Transport: proxy.NewTransportCache(), Now: now, Rand: routing.NewRand(1), Registry: reg}
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	gw := New(rt, Options{Logger: log, Registry: reg, Now: now})
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		srv.Close()
		deps.Transport.CloseIdle()
		rt.Retire(nil)
	})
	t.Cleanup(be.open) // before the gateway's cleanup waits for its handlers

	holder := make(chan string, 1)
	go func() { holder <- readAll(t, post(t, srv.URL+"/v1/chat/completions", streamBody)) }()
	<-be.arrived
	done := make(chan *http.Response, 1)
	go func() { done <- post(t, srv.URL+"/v1/chat/completions", chatBody) }()
	q := gw.Runtime().Queues()["m1"]
	eventually(t, "the request queued", func() bool { return q.Stats().Queued == 1 })
	clock.Add(int64(time.Minute))
	gw.Runtime().Kick()
	resp := <-done
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	header := resp.Header.Get("X-Sluice-Queue-Time")
	if header == "" || header == "0" {
		t.Fatalf("X-Sluice-Queue-Time %q, want the minute it waited", header)
	}
	var line struct {
		Status   int     `json:"status"`
		QueuedMS float64 `json:"queued_ms"`
	}
	eventually(t, "the refusal's access line", func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `"status":503`) {
				return json.Unmarshal([]byte(l), &line) == nil
			}
		}
		return false
	})
	if line.Status != http.StatusServiceUnavailable || int64(line.QueuedMS) != time.Minute.Milliseconds() {
		t.Fatalf("access line status %d queued_ms %v, want 503 and %d (X-Sluice-Queue-Time %s)", line.Status, line.QueuedMS, time.Minute.Milliseconds(), header)
	}
}
