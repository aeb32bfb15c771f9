package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/telemetry"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// A backend answering a status past 599 (net/http's server writes up to
// 999) is broken, not speaking: the client gets the gateway's
// OpenAI-shaped 502 upstream_error, counted as code="502", and the log
// names the status. With a healthy peer, the peer answers and the broken
// backend is charged a failure. Before, 600 and 999 were relayed as they
// came, counted as code="other".
func TestStatusPast599IsUpstreamError(t *testing.T) {
	for _, code := range []int{600, 999} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d stream=%v", code, stream), func(t *testing.T) {
				var calls atomic.Int32
				bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					calls.Add(1)
					io.Copy(io.Discard, r.Body)
					ct := "application/json"
					if stream {
						ct = "text/event-stream"
					}
					w.Header().Set("Content-Type", ct)
					w.WriteHeader(code)
					w.Write([]byte(`{"error":{"message":"weird"}}`))
				}))
				t.Cleanup(bad.Close)
				body := chatBody
				if stream {
					body = `{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`
				}

				srv, gw, logs := loggedGateway(t, testConfig(bad.URL))
				resp := post(t, srv.URL+"/v1/chat/completions", body)
				got := readAll(t, resp)
				if _, c, _ := apiErr(t, got); resp.StatusCode != http.StatusBadGateway || c != "upstream_error" {
					t.Fatalf("alone: %d %s; want 502 upstream_error", resp.StatusCode, got)
				}
				if codes := requestCodes(t, adminServer(t, gw).URL); codes["502"] != 1 || len(codes) != 1 {
					t.Errorf("sluice_requests_total by code: %v; want only 502", codes)
				}
				if want := fmt.Sprintf("status %d, not an HTTP status", code); !strings.Contains(logs.String(), want) {
					t.Errorf("log does not name the status (%q):\n%.2000s", want, logs.String())
				}

				good := newOKBackend(t)
				cfg := testConfig(bad.URL, good.URL)
				cfg.Retry.MinPerSecond = 100
				srv, gw = startGateway(t, cfg)
				calls.Store(0)
				resp = post(t, srv.URL+"/v1/chat/completions", chatBody)
				if got := readAll(t, resp); resp.StatusCode != 200 {
					t.Fatalf("with a healthy peer: %d %s", resp.StatusCode, got)
				}
				if b := gw.Runtime().Pools["m1"].Backends[0]; calls.Load() != 1 || b.Failures() != 1 {
					t.Fatalf("broken backend: %d calls, %d failures; want 1 and 1", calls.Load(), b.Failures())
				}
			})
		}
	}
}

// A follow-up of the Responses API answered past 599 is not relayed
// either: the probe takes it for a failed backend and, none other being
// asked, the client gets the gateway's 503 (the response may be there).
func TestResponsesFollowUpStatusPast599(t *testing.T) {
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(777)
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(bad.Close)
	srv, _ := startGateway(t, testConfig(bad.URL))
	resp := do(t, http.MethodGet, srv.URL+"/v1/responses/resp_x", "")
	got := readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(got, `"code":"response_unavailable"`) {
		t.Fatalf("GET resp_x: %d %s; want 503 response_unavailable", resp.StatusCode, got)
	}
}

// loggedGateway is startGateway with the gateway's log in a buffer.
func loggedGateway(t *testing.T, cfg *config.Config) (*httptest.Server, *Gateway, *logbuf.Buffer) {
	t.Helper()
	logs := &logbuf.Buffer{}
	log, err := telemetry.NewLogger(logs, "info")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: time.Now, Rand: routing.NewRand(1), Registry: reg}
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := New(rt, Options{Logger: log, Registry: reg, Now: time.Now})
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); deps.Transport.CloseIdle(); rt.Retire(nil) })
	return srv, gw, logs
}
