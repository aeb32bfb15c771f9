package gateway

import (
	"maps"
	"sync"
	"sync/atomic"
)

// tally keeps the lifetime counts /status shows per model: requests
// finished, and those answered with an error by its code. Prometheus has
// the same numbers (sluice_requests_total, sluice_errors_total); /status
// reads these instead of scraping its own registry. Requests for a model
// not configured count under "" (as the metrics' label does), so the
// maps stay bounded by the config and the set of error codes.
type tally struct {
	models sync.Map // model name -> *modelTally
	// last is the model counted last: requests in a row are mostly for
	// one model, found by comparing its name instead of a sync.Map Load
	// (~200 instructions per request, by callgrind).
	last atomic.Pointer[modelTally]
	// kept counts keep's runs: a model whose count model found before one
	// ran and put aside after it is taken back (model).
	kept atomic.Uint64
	// jobsRunning counts queued jobs in the chain now (the in-process
	// executor and `sluice worker` calls).
	jobsRunning atomic.Int64
}

type modelTally struct {
	name     string
	requests atomic.Uint64
	mu       sync.Mutex
	errors   map[string]uint64 // by error code
}

func (t *tally) model(name string) *modelTally {
	if m := t.last.Load(); m != nil && m.name == name {
		return m
	}
	kept := t.kept.Load()
	v, ok := t.models.Load(name)
	if !ok {
		v, _ = t.models.LoadOrStore(name, &modelTally{name: name, errors: map[string]uint64{}})
	}
	m := v.(*modelTally)
	t.last.Store(m)
	// keep deletes, then counts its run, then clears last: a run whose
	// deletes this Load may have missed has been counted by now, and the
	// count put aside may be one it deleted, which /status no longer
	// reads. Left aside, the requests of its name counted there, unseen,
	// until another model came (or for good, the model added back).
	if t.kept.Load() != kept {
		t.last.CompareAndSwap(m, nil)
	}
	return m
}

// finished counts one request of model; errCode "" when it was served.
func (t *tally) finished(model, errCode string) {
	m := t.model(model)
	m.requests.Add(1)
	if errCode == "" {
		return
	}
	m.mu.Lock()
	m.errors[errCode]++
	m.mu.Unlock()
}

// snapshot returns model's totals: requests and errors by code.
func (t *tally) snapshot(model string) (requests uint64, errors map[string]uint64) {
	v, ok := t.models.Load(model)
	if !ok {
		return 0, map[string]uint64{}
	}
	m := v.(*modelTally)
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests.Load(), maps.Clone(m.errors)
}

// keep forgets the counts of the models keep rejects (a reload removed
// them; /status lists served models only), "" (models not configured)
// always kept: a model added back starts from zero, as its Prometheus
// series do (series.prune).
func (t *tally) keep(keep func(model string) bool) {
	t.models.Range(func(k, _ any) bool {
		if name := k.(string); name != "" && !keep(name) {
			t.models.Delete(name)
		}
		return true
	})
	t.kept.Add(1)
	t.last.Store(nil)
}
