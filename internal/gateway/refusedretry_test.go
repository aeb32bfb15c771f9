package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// refusals_per_second counts requests refused, each once: a client
// refused again on its retry is the same request refused, counted in
// refused_retries_per_second. Counted per attempt, one client retrying
// four times read as four refused requests, and a retry storm as a flood
// of refused demand a scaler (or an alert on refusals) would act on.
func TestRefusalsCountRequestsNotAttempts(t *testing.T) {
	clk, srv, admin := busyGateway(t, time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC), nil)
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

// A refusal that tells the SDKs not to retry (x-should-retry: false: its
// Retry-After is past their 2-minute bound) leaves no client waiting: it
// is not awaited, so it adds nothing to the in-flight floor for its
// Retry-After. Awaited for the whole 300 s, each such one-shot client
// counted as a client in flight for five minutes.
func TestRefusalNotToBeRetriedIsNotAwaited(t *testing.T) {
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		wait := "300"
		if strings.Contains(string(body), "again") {
			wait = "1"
		}
		w.Header().Set("Retry-After", wait)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(busy.Close)
	cfg := testConfig(busy.URL)
	cfg.Retry.Attempts = 1
	srv, gw := startGateway(t, cfg)
	admin := adminServer(t, gw).URL
	url := srv.URL + "/v1/chat/completions"

	resp := post(t, url, chatBody)
	if readAll(t, resp); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Should-Retry") != "false" {
		t.Fatalf("status %d x-should-retry %q, want the backend's 503 with false", resp.StatusCode, resp.Header.Get("X-Should-Retry"))
	}
	if s := readSignal(t, admin, "m1"); s.AwaitedClients != 0 || s.InFlightBackends != 0 {
		t.Errorf("told not to retry: awaited %d, in flight %.3f backends, want none", s.AwaitedClients, s.InFlightBackends)
	}

	// The control: a wait the SDKs honour leaves the client awaited.
	resp = post(t, url, strings.Replace(chatBody, "hi", "again", 1))
	if readAll(t, resp); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Should-Retry") != "" {
		t.Fatalf("status %d x-should-retry %q, want the backend's 503 without it", resp.StatusCode, resp.Header.Get("X-Should-Retry"))
	}
	if s := readSignal(t, admin, "m1"); s.AwaitedClients != 1 {
		t.Errorf("a retryable refusal: awaited %d, want 1", s.AwaitedClients)
	}
}
