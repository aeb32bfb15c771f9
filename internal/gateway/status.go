package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/endpoint"
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
	if !openai.ReadOnly(w, r) {
		return
	}
	rt := g.rt.Load()
	body, etag := rt.modelList()
	h := w.Header()
	// The list changes only on a config reload: clients and CDNs may keep it
	// briefly and revalidate cheaply with If-None-Match. Behind a credential
	// check (modelsAllowed) only the client may: a shared cache would hand
	// it to callers never checked.
	if rt.tenants.checked() {
		h.Set("Cache-Control", "private, max-age=60")
	} else {
		h.Set("Cache-Control", "public, max-age=60")
	}
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
	if !openai.ReadOnly(w, r) {
		return
	}
	if _, ok := g.rt.Load().Pools[id]; !ok {
		e := openai.NotFound("model_not_found", "The model '"+openai.Echo(id)+"' does not exist")
		e.Param = "model" // as OpenAI's retrieve names it, and as the inference routes' 404 does
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, modelObject{ID: id, Object: "model", OwnedBy: "sluice"})
}

// modelReadiness is one model's entry in /readyz's body.
type modelReadiness struct {
	Model string `json:"model"`
	// Ready: its requests are served now, by a backend that may be picked
	// (healthy or busy) or, with none, by a last resort.
	Ready bool `json:"ready"`
	// Backends counts the pool's backends (draining ones excluded),
	// Usable those that may be picked now, LastResort those out of
	// rotation by passive ejection alone (endpoint.Backend.LastResort),
	// which serve one trial at a time each while none is usable.
	Backends   int `json:"backends"`
	Usable     int `json:"usable"`
	LastResort int `json:"last_resort"`
	// States counts the backends per /status state: healthy, busy,
	// ejected, down (active probe failing), open (breaker).
	States map[string]int `json:"states"`
	// Fallback, when the model's own pool has no usable backend, is the
	// first of its fallbacks (models[].fallbacks) that has: its requests
	// are served there (before any last-resort trial, as admit does).
	Fallback string `json:"fallback,omitempty"`
	// Discovery is the model's discovery sources' state and counts,
	// without their errors; absent without discovery. "initializing"
	// with no backend makes the model, and the replica, not ready.
	Discovery *DiscoveryStatus `json:"discovery,omitempty"`
}

// serveReady answers 200 when at least one model can be served, else 503;
// the body lists every model's state either way. Readiness is about the
// replica, not the fleet: a model whose pool is down is answered by every
// replica with the same OpenAI-shaped 503 and Retry-After, so taking the
// replica out of its load balancer for that would only turn those answers
// into connection errors for every other model too.
//
// A model whose backends are all out by passive ejection alone is served
// (last-resort trials): ready. Passive ejection is what flapping backends
// cause, on every replica at once (they share the backends); a 503 then
// would take every replica out of a Kubernetes Service together, and
// turn the trials' answers into refused connections. Probe-down and
// breaker-open backends serve nothing: a replica none of whose models
// has any other is 503, which is also what moves traffic off a replica
// that alone cannot reach its backends.
//
// A model configured at start and still initialising (its discovery
// sources never found a set: starting, or failing since the start) with
// no backend at all makes the replica 503 whatever the other models do,
// as an Envoy cluster that has not warmed at start keeps the listeners
// from being ready: a replica started into a rollout must not take
// traffic it would answer with 503s, and a rollout whose discovery block
// cannot work stalls instead of completing. A model a reload added warms
// without that (as a cluster added after Envoy's start does): a broken
// new block must not take every running replica out at once. Once a set
// was known, a failing source keeps it (degraded) and readiness follows
// the backends, as above.
func (g *Gateway) serveReady(w http.ResponseWriter, r *http.Request) {
	out := g.readiness()
	status := http.StatusOK
	if !out.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, out)
}

// readyDoc is /readyz's body; its Ready, WaitingFor and JWKS are also
// /status's "readiness" (readinessStatus), so the dashboard on the admin
// listener says why the replica is out of its load balancer.
type readyDoc struct {
	Ready  bool             `json:"ready"`
	Models []modelReadiness `json:"models"`
	// WaitingFor names the models still initialising with no
	// backend: while there is one, the replica is not ready.
	WaitingFor []string `json:"waiting_for,omitempty"`
	// JWKS is the issuer's key set (auth.jwt.jwks_url): ok, degraded
	// (keys held, the last fetch failed) or unavailable (never
	// fetched: bearer tokens are answered 503). Absent without one.
	// The key set of the start, unavailable, makes the replica not
	// ready: it could serve no token-bearing client.
	JWKS auth.KeySetState `json:"jwks,omitempty"`
	// JWKSIssuers, with several issuers (auth.jwt.issuers), is each
	// one's key set state by name; JWKS is then the worst of them, and
	// only every start's key set unavailable, no issuer of static keys
	// among them, makes the replica not ready (one provider down must
	// not take the others' tokens out: auth.Issuers.KeySet).
	JWKSIssuers map[string]auth.KeySetState `json:"jwks_issuers,omitempty"`
	// JobsStore is "failing" while the embedded job store's disk refuses
	// writes (new jobs, batches and files answered 503); absent
	// otherwise. It leaves Ready alone: live traffic does not need the
	// store, and an unready replica would take inference down with it.
	JobsStore string `json:"jobs_store,omitempty"`
}

// readiness is the replica's readiness as /readyz answers it (serveReady).
func (g *Gateway) readiness() readyDoc {
	rt := g.rt.Load()
	now := g.now()
	out := readyDoc{Models: []modelReadiness{}}
	if f := g.jobStoreFault.Load(); f != nil && (*f)() != nil {
		out.JobsStore = "failing"
	}
	for _, name := range rt.Models {
		p := rt.Pools[name]
		m := modelReadiness{Model: name, Backends: len(p.Backends), States: map[string]int{}}
		for _, b := range p.Backends {
			st := b.State(now)
			m.States[st.String()]++
			switch {
			case st == endpoint.StateHealthy || st == endpoint.StateBusy:
				m.Usable++
			case b.LastResort(now):
				m.LastResort++
			}
		}
		m.Ready = m.Usable > 0 || m.LastResort > 0
		if d := g.discoveryOf(name); d != nil {
			d.Errors = nil // registry hosts, paths: the admin listener's /status only
			m.Discovery = d
			if d.State == DiscoveryInitializing && d.holdsReadiness && m.Backends == 0 {
				out.WaitingFor = append(out.WaitingFor, name)
			}
		}
		out.Ready = out.Ready || m.Ready
		if m.Usable == 0 { // as admit: a ready fallback before a last resort
			for _, fb := range p.Fallbacks {
				if fp := rt.Pools[fb]; fp != nil && fp.Ready(now) {
					m.Fallback = fb
					break
				}
			}
		}
		out.Models = append(out.Models, m)
	}
	if len(out.WaitingFor) > 0 {
		out.Ready = false
	}
	if v, _ := rt.tenants.tokens.(*auth.Issuers); v != nil {
		if state, holds, ok := v.KeySet(); ok {
			out.JWKS = state
			if holds {
				out.Ready = false
			}
		}
		for _, ks := range v.KeySets() {
			if out.JWKSIssuers == nil {
				out.JWKSIssuers = map[string]auth.KeySetState{}
			}
			out.JWKSIssuers[ks.Name] = ks.State
		}
	}
	return out
}

func (g *Gateway) backendSamples() []telemetry.BackendSample {
	rt := g.rt.Load()
	now := g.now()
	var out []telemetry.BackendSample
	for _, name := range rt.Models {
		for _, b := range rt.Pools[name].Backends {
			out = append(out, telemetry.BackendSample{
				Model: name, Backend: b.Name(), State: b.State(now).String(),
				Inflight: b.Inflight(), CPUInflight: b.CPUInflight(), OutstandingTokens: b.Work(), Requests: b.Requests(), Failures: b.Failures(),
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
