package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (g *Gateway) serveModels(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, &openai.Error{Status: http.StatusMethodNotAllowed, Type: openai.TypeInvalidRequest,
			Code: "method_not_allowed", Message: "use GET for /v1/models"})
		return
	}
	rt := g.rt.Load()
	list := struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}{Object: "list", Data: []modelObject{}}
	for _, m := range rt.Models {
		list.Data = append(list.Data, modelObject{ID: m, Object: "model", OwnedBy: "sluice"})
	}
	writeJSON(w, http.StatusOK, list)
}

func (g *Gateway) serveModel(w http.ResponseWriter, r *http.Request, id string) {
	if _, ok := g.rt.Load().Pools[id]; !ok {
		writeError(w, openai.NotFound("model_not_found", "The model '"+id+"' does not exist"))
		return
	}
	writeJSON(w, http.StatusOK, modelObject{ID: id, Object: "model", OwnedBy: "sluice"})
}

// serveReady answers 200 when every model has a usable backend, else 503
// with the models that have none, so a load balancer stops sending here.
func (g *Gateway) serveReady(w http.ResponseWriter, r *http.Request) {
	rt := g.rt.Load()
	now := g.now()
	var down []string
	for _, name := range rt.Models {
		if !rt.Pools[name].Ready(now) {
			down = append(down, name)
		}
	}
	if len(down) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "models_without_backend": down})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true})
}

type backendStatus struct {
	Name           string  `json:"name"`
	URL            string  `json:"url"`
	State          string  `json:"state"`
	Inflight       int64   `json:"inflight"`
	Requests       uint64  `json:"requests"`
	Failures       uint64  `json:"failures"`
	EWMALatencyMS  float64 `json:"ewma_latency_ms"`
	Weight         int     `json:"weight"`
	MaxConcurrency int     `json:"max_concurrency"`
	// Limit is the concurrency limit in force: max_concurrency, or the
	// adaptive limit; 0 = unlimited.
	Limit int `json:"limit"`
}

type poolStatus struct {
	Model    string          `json:"model"`
	Policy   string          `json:"policy"`
	Backends []backendStatus `json:"backends"`
	// Queue is the admission queue (absent when admission is off).
	Queue *admission.Stats `json:"queue,omitempty"`
}

func (g *Gateway) serveStatus(w http.ResponseWriter, r *http.Request) {
	rt := g.rt.Load()
	now := g.now()
	out := struct {
		Models []poolStatus `json:"models"`
	}{}
	for _, name := range rt.Models {
		p := rt.Pools[name]
		ps := poolStatus{Model: name, Policy: p.Policy}
		for _, b := range p.Backends {
			spec := b.Spec()
			ps.Backends = append(ps.Backends, backendStatus{
				Name: b.Name(), URL: spec.URL, State: b.State(now).String(), Inflight: b.Inflight(),
				Requests: b.Requests(), Failures: b.Failures(),
				EWMALatencyMS: float64(b.Latency(now).Microseconds()) / 1000,
				Weight:        b.Weight(), MaxConcurrency: spec.MaxConcurrency, Limit: b.Limit(),
			})
		}
		if p.queue != nil {
			st := p.queue.q.Stats()
			ps.Queue = &st
		}
		out.Models = append(out.Models, ps)
	}
	writeJSON(w, http.StatusOK, out)
}

func (g *Gateway) backendSamples() []telemetry.BackendSample {
	rt := g.rt.Load()
	now := g.now()
	var out []telemetry.BackendSample
	for _, name := range rt.Models {
		for _, b := range rt.Pools[name].Backends {
			out = append(out, telemetry.BackendSample{
				Model: name, Backend: b.Name(), State: b.State(now).String(),
				Inflight: b.Inflight(), Requests: b.Requests(), Failures: b.Failures(),
				LatencySeconds: b.Latency(now).Seconds(),
			})
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
