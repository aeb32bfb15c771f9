package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"

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
	body, etag := g.rt.Load().modelList()
	h := w.Header()
	// The list changes only on a config reload: clients and CDNs may keep it
	// briefly and revalidate cheaply with If-None-Match.
	h.Set("Cache-Control", "public, max-age=60")
	h.Set("ETag", etag)
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}

// modelList renders /v1/models once per runtime, with its strong ETag.
func (rt *Runtime) modelList() ([]byte, string) {
	rt.modelsOnce.Do(func() {
		list := struct {
			Object string        `json:"object"`
			Data   []modelObject `json:"data"`
		}{Object: "list", Data: []modelObject{}}
		for _, m := range rt.Models {
			list.Data = append(list.Data, modelObject{ID: m, Object: "model", OwnedBy: "sluice"})
		}
		rt.modelsJSON, _ = json.MarshalIndent(list, "", "  ")
		sum := sha256.Sum256(rt.modelsJSON)
		rt.modelsETag = `"` + hex.EncodeToString(sum[:8]) + `"`
	})
	return rt.modelsJSON, rt.modelsETag
}

// etagMatches implements If-None-Match's list and weak comparison.
func etagMatches(header, etag string) bool {
	for _, part := range strings.Split(header, ",") {
		part = strings.TrimPrefix(strings.TrimSpace(part), "W/")
		if part == "*" || part == etag {
			return true
		}
	}
	return false
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

func (g *Gateway) backendSamples() []telemetry.BackendSample {
	rt := g.rt.Load()
	now := g.now()
	var out []telemetry.BackendSample
	for _, name := range rt.Models {
		for _, b := range rt.Pools[name].Backends {
			out = append(out, telemetry.BackendSample{
				Model: name, Backend: b.Name(), State: b.State(now).String(),
				Inflight: b.Inflight(), OutstandingTokens: b.Work(), Requests: b.Requests(), Failures: b.Failures(),
				LatencySeconds: b.Latency(now).Seconds(), SlowStart: b.RampFactor(),
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
