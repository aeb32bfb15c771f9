package gateway

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// refusals_per_second counts requests refused, each once: a client
// refused again on its retry is the same request refused, counted in
// refused_retries_per_second. Counted per attempt, one client retrying
// four times read as four refused requests, and a retry storm as a flood
// of refused demand a scaler (or an alert on refusals) would act on.
func TestRefusalsCountRequestsNotAttempts(t *testing.T) {
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(busy.Close)
	cfg := testConfig(busy.URL)
	cfg.Retry.Attempts = 1
	cfg.Scaling.Window = config.Duration(10 * time.Minute)
	clk := &testClock{t: time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC)}
	deps := Deps{Transport: proxy.NewTransportCache(), Now: clk.Now, Rand: routing.NewRand(1), Registry: prometheus.NewRegistry()}
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := New(rt, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(), Now: clk.Now})
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); deps.Transport.CloseIdle(); rt.Retire(nil) })
	admin := adminServer(t, gw).URL
	url := srv.URL + "/v1/chat/completions"
	other := `{"model":"m1","messages":[{"role":"user","content":"other"}],"max_tokens":4}`

	// Two clients: one refused four times (three retries), another once.
	for try := range 4 {
		resp := post(t, url, chatBody, "X-Stainless-Retry-Count", string(rune('0'+try)))
		if readAll(t, resp); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want the backend's 503", resp.StatusCode)
		}
		clk.Add(time.Second)
	}
	resp := post(t, url, other)
	if readAll(t, resp); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want the backend's 503", resp.StatusCode)
	}
	s := readSignal(t, admin, "m1")
	// × the window: the decayed rates read as counts (4 s of 600 decay
	// them by under 1%).
	if got := s.RefusalsPerSec["backend_busy"] * 600; got < 1.95 || got > 2.0001 {
		t.Errorf("refusals × window %.3f, want 2 requests refused (refusals %v)", got, s.RefusalsPerSec)
	}
	if got := s.RefusedRetriesPerSec * 600; got < 2.95 || got > 3.0001 {
		t.Errorf("refused retries × window %.3f, want 3", got)
	}
}
