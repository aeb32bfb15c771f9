package app

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/gateway"
)

// stateWatchEvery is how often watchEjections looks at the backends while
// one is ejected: passive ejection lasts fail_timeout (seconds), so a look
// every half second sees every recovery.
const stateWatchEvery = 500 * time.Millisecond

// watchEjections logs passive ejections (max_fails failures within
// fail_timeout) and the recoveries from them. Unlike probe results and
// breaker changes, which their owners log as they decide them, an
// ejection is a deadline written on a request's path and a recovery is
// that deadline passing, so they are found by looking: every
// stateWatchEvery from an ejection (Deps.Ejections says when one happens)
// until no backend is ejected; not at all while none is.
func (a *App) watchEjections(ctx context.Context) {
	ejected := map[*endpoint.Backend]bool{}
	whileBusy(ctx, stateWatchEvery, a.ticker, a.deps.Ejections, func() bool {
		return a.noteEjections(ejected)
	})
}

// noteEjections compares the backends' states with the last look's and
// logs the changes into and out of ejection. It reports whether to look
// again: a backend is still ejected (logged so, or ejected while probe-down,
// which shows as ejected once the probe passes).
func (a *App) noteEjections(ejected map[*endpoint.Backend]bool) (again bool) {
	rt := a.gw.Runtime()
	now := a.deps.Now()
	seen := make(map[*endpoint.Backend]bool, len(ejected))
	hp := rt.Config.Health
	for _, model := range rt.Models {
		for _, b := range rt.Pools[model].Backends {
			seen[b] = true
			st := b.State(now)
			switch was := ejected[b]; {
			case st == endpoint.StateEjected && !was:
				ejected[b] = true
				a.log.Warn("backend ejected: passive health check", "model", model, "backend", b.Name(),
					"max_fails", hp.MaxFails, "fail_timeout", hp.FailTimeout.D().String(), "failures_total", b.Failures())
			case st != endpoint.StateEjected && was:
				delete(ejected, b)
				a.log.Info("backend back from ejection", "model", model, "backend", b.Name(), "state", st.String())
			}
			again = again || b.EjectedUntil().After(now)
		}
	}
	for b := range ejected {
		if !seen[b] {
			delete(ejected, b) // left the pool (discovery, reload)
		}
	}
	return again || len(ejected) > 0
}

// logPoolChanges logs, per model, the backends a rebuild (discovery, a
// reload) added and removed, by name: a count alone
// does not say what changed.
func (a *App) logPoolChanges(prev, next *gateway.Runtime, why string) {
	names := func(rt *gateway.Runtime, model string) map[string]bool {
		out := map[string]bool{}
		if rt == nil || rt.Pools[model] == nil {
			return out
		}
		for _, b := range rt.Pools[model].Backends {
			out[b.Name()] = true
		}
		return out
	}
	for _, model := range next.Models {
		before, after := names(prev, model), names(next, model)
		var added, removed []string
		for n := range after {
			if !before[n] {
				added = append(added, n)
			}
		}
		for n := range before {
			if !after[n] {
				removed = append(removed, n)
			}
		}
		if len(added)+len(removed) == 0 {
			continue
		}
		slices.Sort(added)
		slices.Sort(removed)
		a.log.Info(why+": pool changed", "model", model, "added", firstNames(added), "added_count", len(added),
			"removed", firstNames(removed), "removed_count", len(removed), "backends", len(after))
	}
}

// poolChangeNames bounds the names one pool-changed line lists for each
// of added and removed: a file or registry swapping hundreds of backends
// wrote one line of every name (4,000 names, ~100 KB) per change.
const poolChangeNames = 10

// firstNames is names (sorted) cut to poolChangeNames, the rest counted
// in a last "+K more".
func firstNames(names []string) []string {
	if len(names) <= poolChangeNames {
		return names
	}
	return append(slices.Clip(names[:poolChangeNames]), fmt.Sprintf("+%d more", len(names)-poolChangeNames))
}
