package app

import (
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/gateway"
)

// prevIndex is the running runtime's backends, indexed once per build.
// Build asks of every backend it makes whether the running runtime has
// it (reuse, respecified, owns); answered by scanning, and by copying
// the runtime's backend list at each question, a build of n backends
// cost n²: 1.1 s for 4,000 discovered backends, 1.5 s for each later
// change of one of them.
type prevIndex struct {
	all map[*endpoint.Backend]bool
	// bySpec and keys are by model: its pool's backends by Spec (and its
	// draining ones, under those serving), and the Keys of those serving.
	bySpec map[string]map[endpoint.Spec]*endpoint.Backend
	keys   map[string]map[string]bool
}

func newPrevIndex(rt *gateway.Runtime) *prevIndex {
	x := &prevIndex{all: map[*endpoint.Backend]bool{},
		bySpec: map[string]map[endpoint.Spec]*endpoint.Backend{}, keys: map[string]map[string]bool{}}
	if rt == nil {
		return x
	}
	for _, model := range rt.Models {
		p := rt.Pools[model]
		specs, keys := map[endpoint.Spec]*endpoint.Backend{}, map[string]bool{}
		for _, be := range p.Draining {
			specs[be.Spec()] = be
		}
		for _, be := range p.Backends {
			x.all[be] = true
			specs[be.Spec()] = be
			keys[be.Spec().Key()] = true
		}
		x.bySpec[model], x.keys[model] = specs, keys
	}
	return x
}

// owns reports whether be serves in the running runtime.
func (x *prevIndex) owns(be *endpoint.Backend) bool { return x.all[be] }

// respecified reports whether the running pool of model has a backend for
// the same server as spec (same Key: URL, API key and upstream model)
// whatever its other settings.
func (x *prevIndex) respecified(model string, spec endpoint.Spec) bool {
	return x.keys[model][spec.Key()]
}

// reuse is the running pool's backend of model with spec, or nil. One
// still draining, not yet retired, is taken back: its requests run on (a
// new backend beside it would leave them to be cut at the grace's end,
// and admit max_concurrency more), and its health, breaker and latency
// state come with it. Retirement and builds both run under App.reloadMu,
// so it cannot be retired once taken.
func (x *prevIndex) reuse(model string, spec endpoint.Spec) *endpoint.Backend {
	be := x.bySpec[model][spec]
	if be == nil || (!x.all[be] && be.Context().Err() != nil) {
		return nil
	}
	return be
}

// backendSet is rt's serving backends as a set.
func backendSet(rt *gateway.Runtime) map[*endpoint.Backend]bool {
	out := map[*endpoint.Backend]bool{}
	if rt != nil {
		for _, be := range rt.Backends() {
			out[be] = true
		}
	}
	return out
}
