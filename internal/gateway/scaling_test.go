package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/scaling"
	"github.com/sluice-gw/sluice/internal/sim"
)

// readSignal GETs /scaling?model=m from the admin server.
func readSignal(t *testing.T, admin, model string) scaling.Signal {
	t.Helper()
	code, _, body := get(t, admin+"/scaling?model="+model)
	if code != http.StatusOK {
		t.Fatalf("/scaling?model=%s: status %d: %s", model, code, body)
	}
	var s scaling.Signal
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("/scaling: %v in %s", err, body)
	}
	return s
}

// Live requests that need a backend are demand; a cache hit is not. Each
// completion teaches the backend's service rate, and desired backends is
// the sum of its terms.
func TestScalingSignalsCountDemandAndMeasureService(t *testing.T) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Slots: 4}))
	t.Cleanup(be.Close)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 4
	// A window of ten minutes: what decays during the test is far below
	// what the assertions tell apart, however slow the machine.
	cfg.Scaling.Window = config.Duration(10 * time.Minute)
	url, gw := startCachingGatewayCfg(t, cfg, nil, time.Now)
	admin := adminServer(t, gw).URL

	for i := range 3 {
		resp := post(t, url, fmt.Sprintf(detBody, fmt.Sprintf(`,"max_tokens":%d`, 3+i)))
		if readAll(t, resp); resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "MISS" {
			t.Fatalf("request %d: status %d, X-Cache %q", i, resp.StatusCode, resp.Header.Get("X-Cache"))
		}
	}
	resp := post(t, url, fmt.Sprintf(detBody, `,"max_tokens":3`))
	if readAll(t, resp); resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("the repeat must be a cache hit, X-Cache %q", resp.Header.Get("X-Cache"))
	}

	s := readSignal(t, admin, "m1")
	window := (10 * time.Minute).Seconds()
	if n := s.ArrivalRequestsPerSecond * window; n < 2.5 || n > 3.0001 {
		t.Fatalf("arrivals × window = %.3f, want the 3 requests that needed a backend (not the hit)", n)
	}
	if s.Backends != 1 || s.UsableBackends != 1 || len(s.BackendsService) != 1 {
		t.Fatalf("backends %+v", s)
	}
	b := s.BackendsService[0]
	if !b.Measured || b.Slots != 4 || b.RequestsPerSecond <= 0 || b.TokensPerSecond <= b.RequestsPerSecond {
		t.Fatalf("backend service %+v: measured with 4 slots, a rate, tokens from the usage", b)
	}
	if s.Service.RequestsPerSecond != b.RequestsPerSecond {
		t.Fatalf("the pool's mean service %+v is its one backend's %+v", s.Service, b)
	}
	if sum := s.Need.Demand + s.Need.Headroom + s.Need.Burst + s.Need.Queue; s.DesiredBackends <= 0 || s.DesiredBackends != sum {
		t.Fatalf("desired %.4f, terms %+v", s.DesiredBackends, s.Need)
	}
	if s.Headroom != 0.2 || s.DrainForSeconds != 2 || s.QueueWaitSeconds != 0 {
		t.Fatalf("policy fields %+v", s)
	}

	code, _, metrics := get(t, admin+"/metrics")
	for _, want := range []string{`sluice_model_desired_backends{model="m1"}`, `sluice_model_arrival_requests_per_second{model="m1"}`,
		`sluice_backend_service_requests_per_second{backend=`} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// A backend's refusal relayed to the client is counted by reason; the
// admin endpoint lists every model and refuses an unknown one by name.
func TestScalingEndpointRefusalsAndErrors(t *testing.T) {
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(busy.Close)
	cfg := testConfig(busy.URL)
	cfg.Retry.Attempts = 1
	cfg.Scaling.Window = config.Duration(10 * time.Minute)
	srv, gw := startGateway(t, cfg)
	admin := adminServer(t, gw).URL
	// Two requests (two bodies: the same body again within Retry-After is
	// a retry, counted apart: TestRefusalsCountRequestsNotAttempts).
	for i := range 2 {
		resp := post(t, srv.URL+"/v1/chat/completions", strings.Replace(chatBody, "}]", "}],\"seed\":"+strconv.Itoa(i), 1))
		if readAll(t, resp); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want the backend's 503", resp.StatusCode)
		}
	}
	s := readSignal(t, admin, "m1")
	if n := s.RefusalsPerSec["backend_busy"] * 600; n < 1.5 || n > 2.0001 {
		t.Fatalf("refusals %v: want the two backend_busy", s.RefusalsPerSec)
	}
	if s.Service.Measured {
		t.Fatal("a refusal is no completion: nothing measured")
	}

	code, _, body := get(t, admin+"/scaling")
	var all struct{ Models []scaling.Signal }
	if err := json.Unmarshal([]byte(body), &all); code != 200 || err != nil || len(all.Models) != 1 || all.Models[0].Model != "m1" {
		t.Fatalf("/scaling: %d %v %s", code, err, body)
	}
	code, _, body = get(t, admin+"/scaling?model=nope")
	if _, c, _ := apiErr(t, body); code != http.StatusNotFound || c != "model_not_found" || !strings.Contains(body, `"param": "model"`) && !strings.Contains(body, `"param":"model"`) {
		t.Fatalf("unknown model: %d %s", code, body)
	}
	resp := post(t, admin+"/scaling", "{}")
	if readAll(t, resp); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /scaling: %d", resp.StatusCode)
	}
}

// A backend other gateways also fill: at capacity its slots are this
// gateway's limit scaled by everything it holds (scraped running +
// waiting) over what this gateway held, so each replica measures the
// backend's rate rather than its own share of it.
func TestScalingCountsOtherReplicasSlotsAtCapacity(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1 // every completion ends with the backend full
	srv, gw := startGateway(t, cfg)
	b := gw.Runtime().Pools["m1"].Backends[0]
	now := time.Now()
	// Three other replicas' requests beside ours: 4 in all, 1 of them ours.
	b.SetLoad(endpoint.Load{Running: 3, Waiting: 1, InflightAtScrape: 1, At: now, Expires: now.Add(time.Hour)})
	for range 32 { // enough completions at capacity to be trusted (scaling.minBusy)
		readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody))
	}
	s := readSignal(t, adminServer(t, gw).URL, "m1")
	if bs := s.BackendsService[0]; !bs.AtCapacity || bs.Slots != 4 {
		t.Fatalf("backend service %+v: want at capacity with the backend's 4 slots", bs)
	}
}
