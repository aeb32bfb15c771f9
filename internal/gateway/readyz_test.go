package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

type readyBody struct {
	Ready  bool             `json:"ready"`
	Models []modelReadiness `json:"models"`
}

func getReady(t *testing.T, base string) (int, readyBody) {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	raw := readAll(t, resp)
	var b readyBody
	if err := json.Unmarshal([]byte(raw), &b); err != nil {
		t.Fatalf("/readyz body %q: %v", raw, err)
	}
	return resp.StatusCode, b
}

// One model's dead pool leaves the replica ready (its clients get the
// OpenAI-shaped 503, the other model's clients are served); only when no
// model can be served does /readyz say 503. The body shows each model.
func TestReadyzWhileAnyModelCanServe(t *testing.T) {
	live := newOKBackend(t)
	cfg := testConfig(closedURL(t))
	cfg.Models = append(cfg.Models, config.Model{Name: "m2", Policy: "round_robin",
		Backends: []config.Backend{{URL: live.URL}}})
	cfg.Models = append(cfg.Models, config.Model{Name: "m3", Policy: "round_robin",
		Backends: []config.Backend{{URL: closedURL(t)}}, Fallbacks: []string{"m2"}})
	cfg.Health.MaxFails = 1
	cfg.Retry.Attempts = 1
	srv, gw := startGateway(t, cfg)

	readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody)) // ejects m1's only backend
	gw.Runtime().Pools["m3"].Backends[0].SetProbeHealthy(false)   // as a failing active probe does
	code, body := getReady(t, srv.URL)
	if code != 200 || !body.Ready || len(body.Models) != 3 {
		t.Fatalf("/readyz = %d %+v with m2 servable, want 200 ready", code, body)
	}
	m1, m2 := body.Models[0], body.Models[1]
	if m1.Model != "m1" || !m1.Ready || m1.Usable != 0 || m1.LastResort != 1 || m1.Backends != 1 || m1.States["ejected"] != 1 {
		t.Fatalf("m1 = %+v, want ready by its ejected backend's trials", m1)
	}
	if m2.Model != "m2" || !m2.Ready || m2.Usable != 1 || m2.States["healthy"] != 1 || m2.Fallback != "" {
		t.Fatalf("m2 = %+v, want ready with one healthy backend", m2)
	}
	if m1.Fallback != "" {
		t.Fatalf("m1 = %+v has no fallbacks", m1)
	}
	if m3 := body.Models[2]; m3.Ready || m3.LastResort != 0 || m3.States["down"] != 1 || m3.Fallback != "m2" {
		t.Fatalf("m3 = %+v, want not ready, served by its fallback m2", m3)
	}
	resp := post(t, srv.URL+"/v1/chat/completions", strings.Replace(chatBody, `"m1"`, `"m2"`, 1))
	if readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("m2 request = %d while the replica says ready", resp.StatusCode)
	}

	gw.Runtime().Pools["m2"].Backends[0].SetProbeHealthy(false) // as a failing active probe does
	gw.Runtime().Pools["m1"].Backends[0].SetProbeHealthy(false)
	code, body = getReady(t, srv.URL)
	if code != 503 || body.Ready || body.Models[1].States["down"] != 1 || body.Models[2].Fallback != "" {
		t.Fatalf("/readyz = %d %+v with no model servable, want 503", code, body)
	}
}

// The only backend out by passive ejection alone (max_fails 1, failing):
// its pool serves through trials, so the replica stays ready, the body
// saying how (usable 0, last_resort 1); the old code said 503 while the
// trials answered. Held down by the active probe as well, it serves
// nothing: 503.
func TestReadyzWhileLastResortServes(t *testing.T) {
	fb, srv, gw := ejectedOnlyBackend(t)
	code, body := getReady(t, srv.URL)
	if m := body.Models[0]; code != 200 || !body.Ready || !m.Ready || m.Usable != 0 || m.LastResort != 1 || m.States["ejected"] != 1 {
		t.Fatalf("/readyz = %d %+v with the ejected backend tried, want 200, usable 0, last_resort 1", code, body)
	}
	fb.fail.Store(false)
	if st, errCode, _ := chatStatus(t, srv.URL); st != http.StatusOK { // the trial, as /readyz said
		t.Fatalf("trial: status %d %s, want 200", st, errCode)
	}
	if st, _, _ := chatStatus(t, srv.URL); st != http.StatusOK {
		t.Fatalf("after the trial: status %d, want 200", st)
	}
	fb.fail.Store(true)
	if st, _, _ := chatStatus(t, srv.URL); st != http.StatusInternalServerError {
		t.Fatalf("status %d, want the backend's 500", st)
	}
	gw.Runtime().Pools["m1"].Backends[0].SetProbeHealthy(false)
	code, body = getReady(t, srv.URL)
	if m := body.Models[0]; code != 503 || body.Ready || m.LastResort != 0 || m.States["down"] != 1 {
		t.Fatalf("/readyz = %d %+v with the backend probe-down, want 503", code, body)
	}
}
