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
	if m1.Model != "m1" || m1.Ready || m1.Usable != 0 || m1.Backends != 1 || m1.States["ejected"] != 1 {
		t.Fatalf("m1 = %+v, want not ready with its backend ejected", m1)
	}
	if m2.Model != "m2" || !m2.Ready || m2.Usable != 1 || m2.States["healthy"] != 1 || m2.Fallback != "" {
		t.Fatalf("m2 = %+v, want ready with one healthy backend", m2)
	}
	if m1.Fallback != "" {
		t.Fatalf("m1 = %+v has no fallbacks", m1)
	}
	if m3 := body.Models[2]; m3.Ready || m3.States["down"] != 1 || m3.Fallback != "m2" {
		t.Fatalf("m3 = %+v, want not ready, served by its fallback m2", m3)
	}
	resp := post(t, srv.URL+"/v1/chat/completions", strings.Replace(chatBody, `"m1"`, `"m2"`, 1))
	if readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("m2 request = %d while the replica says ready", resp.StatusCode)
	}

	gw.Runtime().Pools["m2"].Backends[0].SetProbeHealthy(false) // as a failing active probe does
	code, body = getReady(t, srv.URL)
	if code != 503 || body.Ready || body.Models[1].States["down"] != 1 || body.Models[2].Fallback != "" {
		t.Fatalf("/readyz = %d %+v with no model servable, want 503", code, body)
	}
}
