package health

import (
	"net/http"
	"slices"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
)

func TestPlanForEngines(t *testing.T) {
	tests := []struct {
		engine, apiKey string
		want           Plan
	}{
		{"vllm", "", Plan{Path: "/health"}},
		{"sglang", "", Plan{Path: "/health"}},
		{"llamacpp", "", Plan{Path: "/health"}},
		{"tgi", "", Plan{Path: "/health"}},
		{"vllm", "k", Plan{Path: "/health"}}, // said so: probed, with its key
		{"ollama", "", Plan{}},
		{"hosted", "k", Plan{}},
		{"", "k", Plan{}}, // unknown with a key: likely hosted, not probed
		{"", "", Plan{Path: "/health", Auto: true}},
	}
	for _, tt := range tests {
		got := PlanFor(endpoint.Spec{Engine: tt.engine, APIKey: tt.apiKey}, "/health")
		if got != tt.want {
			t.Errorf("PlanFor(engine %q, key %q) = %+v, want %+v", tt.engine, tt.apiKey, got, tt.want)
		}
	}
	// Every engine the config accepts has a rule (vllm-like or off), none
	// falls through by accident to the unknown-engine guess.
	for _, e := range config.Engines {
		if PlanFor(endpoint.Spec{Engine: e}, "/health").Auto {
			t.Errorf("engine %q is treated as unknown", e)
		}
	}
	if !slices.Contains(config.Engines, "vllm") || !slices.Contains(config.Engines, "ollama") {
		t.Fatalf("config.Engines = %v", config.Engines)
	}
}

// A backend of unknown engine that answers 404 at /health (Ollama, an
// OpenAI-compatible server without a health route) is not taken down: the
// checker stops probing it. One that says it is vLLM and answers 404 is
// taken down (its /health should exist).
func TestUnknownEngineWithoutHealthEndpointIsNotProbed(t *testing.T) {
	srv := newFakeServer(t)
	srv.status.Store(http.StatusNotFound)
	guessed := newBackend(t, srv.URL, "")
	vllm, err := endpoint.New(endpoint.Spec{URL: srv.URL + "/vllm", Engine: "vllm"}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	hosted, err := endpoint.New(endpoint.Spec{URL: srv.URL + "/hosted", APIKey: "k"}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	c := NewChecker(Config{Timeout: healthyProbeBound, Fails: 1, PlanFor: func(b *endpoint.Backend) Plan { return PlanFor(b.Spec(), "/health") }}, newClient(t), nil)
	all := []*endpoint.Backend{guessed, vllm, hosted}
	c.ProbeOnce(t.Context(), all)
	if !isUp(guessed) || isUp(vllm) || !isUp(hosted) {
		t.Fatalf("after a 404 round: guessed up %v (want true), vllm up %v (want false), hosted up %v (want true)",
			isUp(guessed), isUp(vllm), isUp(hosted))
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("%d probes, want 2 (the backend with an api_key is not probed)", n)
	}
	c.ProbeOnce(t.Context(), all)
	if n := srv.hits.Load(); n != 3 {
		t.Fatalf("%d probes after a second round, want 3 (only vllm is probed again)", n)
	}
	// A 503 from a guessed backend is a failing server, not a missing route.
	srv.status.Store(http.StatusServiceUnavailable)
	other := newBackend(t, srv.URL+"/other", "")
	c.ProbeOnce(t.Context(), []*endpoint.Backend{other})
	if isUp(other) {
		t.Fatal("a guessed backend answering 503 at /health is still up")
	}
}

// A backend left probe-down is let back up when its plan stops probing it
// (a reload set its engine to one that is not probed).
func TestUnprobedBackendIsReleased(t *testing.T) {
	srv := newFakeServer(t)
	srv.status.Store(http.StatusInternalServerError)
	b := newBackend(t, srv.URL, "")
	probed := true
	c := NewChecker(Config{Timeout: healthyProbeBound, Fails: 1, PlanFor: func(*endpoint.Backend) Plan {
		if probed {
			return Plan{Path: "/health"}
		}
		return Plan{}
	}}, newClient(t), nil)
	c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
	if isUp(b) {
		t.Fatal("still up after a failed probe")
	}
	probed = false
	c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
	if !isUp(b) {
		t.Fatal("still down although no longer probed")
	}
}
