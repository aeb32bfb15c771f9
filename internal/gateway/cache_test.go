package gateway

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/sim"
)

func startCachingGateway(t *testing.T, backendURL string) *httptest.Server {
	t.Helper()
	tiered := newTestTiered(t, cache.TieredOptions{})
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: time.Now, Rand: routing.NewRand(1), Registry: reg, Cache: tiered}
	cfg := testConfig(backendURL)
	cfg.Auth.Keys = []config.Tenant{{Key: "a"}, {Key: "b"}} // two tenants
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := New(rt, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg})
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); deps.Transport.CloseIdle() })
	return srv
}

func TestResponseCache(t *testing.T) {
	s := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond})
	defer s.Close()
	be := httptest.NewServer(s)
	defer be.Close()
	srv := startCachingGateway(t, be.URL)
	url := srv.URL + "/v1/chat/completions"
	det := `{"model":"m1","temperature":0,"max_tokens":5,"messages":[{"role":"user","content":"what is a sluice"}]}`

	resp := post(t, url, det, "Authorization", "Bearer a")
	first := readAll(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("first: %d X-Cache %q", resp.StatusCode, resp.Header.Get("X-Cache"))
	}
	// Same request, other key order and spacing: a hit, same body, no backend call.
	same := `{ "messages":[{"content":"what is a sluice","role":"user"}], "max_tokens":5, "temperature":0, "model":"m1" }`
	resp = post(t, url, same, "Authorization", "Bearer a")
	if body := readAll(t, resp); resp.Header.Get("X-Cache") != "HIT" || body != first || resp.Header.Get("Age") == "" {
		t.Fatalf("second: X-Cache %q Age %q body equal %v", resp.Header.Get("X-Cache"), resp.Header.Get("Age"), body == first)
	}
	// The cached answer replays as a valid SSE stream.
	stream := strings.Replace(det, `"max_tokens":5`, `"max_tokens":5,"stream":true`, 1)
	resp = post(t, url, stream, "Authorization", "Bearer a")
	sse := readAll(t, resp)
	if resp.Header.Get("X-Cache") != "HIT" || resp.Header.Get("Content-Type") != "text/event-stream" ||
		!strings.HasPrefix(sse, "data: {") || !strings.HasSuffix(sse, "data: [DONE]\n\n") {
		t.Fatalf("stream replay: X-Cache %q ct %q body %q", resp.Header.Get("X-Cache"), resp.Header.Get("Content-Type"), sse)
	}
	if n := s.Stats().Requests; n != 1 {
		t.Fatalf("backend saw %d requests, want 1", n)
	}
	// Another tenant never sees tenant a's answer; bypasses reach the backend.
	for _, c := range []struct{ body, auth, cc, want string }{
		{det, "Bearer b", "", "MISS"},
		{det, "Bearer a", "no-store", "BYPASS"},
		{strings.Replace(det, `"temperature":0`, `"temperature":0.7`, 1), "Bearer a", "", "BYPASS"},
	} {
		hdr := []string{"Authorization", c.auth}
		if c.cc != "" {
			hdr = append(hdr, "Cache-Control", c.cc)
		}
		resp = post(t, url, c.body, hdr...)
		readAll(t, resp)
		if got := resp.Header.Get("X-Cache"); got != c.want {
			t.Fatalf("%s %s cc=%q: X-Cache %q, want %s", c.auth, c.body, c.cc, got, c.want)
		}
	}
	if n := s.Stats().Requests; n != 4 {
		t.Fatalf("backend saw %d requests, want 4", n)
	}
}
