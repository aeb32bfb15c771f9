// The active health checker's lifecycle: started, restarted when
// health.active changes, stopped.

package app

import (
	"context"
	"net/http"
	"reflect"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/health"
)

// syncChecker (re)starts the active health checker when its settings change.
func (a *App) syncChecker(cfg config.Active) {
	a.checkMu.Lock()
	defer a.checkMu.Unlock()
	if a.checkEnd != nil && reflect.DeepEqual(cfg, a.checkCfg) {
		return
	}
	a.stopCheckerLocked()
	a.checkCfg = cfg
	if cfg.Interval <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.checkEnd = cancel
	checker := health.NewChecker(health.Config{
		Path: cfg.Path, Interval: cfg.Interval.D(), Timeout: cfg.Timeout.D(), Passes: cfg.Passes, Fails: cfg.Fails,
		PlanFor:    func(b *endpointBackend) health.Plan { return health.PlanFor(b.Spec(), cfg.Path) },
		OnDiscount: func(b *endpointBackend) { a.probesDiscounted.WithLabelValues(b.Name()).Inc() },
	}, &http.Client{Transport: a.deps.Transport.Current(a.gw.Runtime().Config.Timeouts.Connect.D())}, a.log)
	a.checkWG.Add(1)
	go func() {
		defer a.checkWG.Done()
		checker.Run(ctx, func() []*endpointBackend { return a.gw.Runtime().Backends() })
	}()
}

// newProbesDiscounted registers sluice_health_probes_discounted_total.
func newProbesDiscounted(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_health_probes_discounted_total",
		Help: "Active health probes that timed out while the gateway itself was stalled (ended over 250 ms past their deadline: CPU starvation, a pause), counted neither as a pass nor as a failure, by backend.",
	}, []string{"backend"})
	reg.MustRegister(c)
	return c
}

func (a *App) stopChecker() {
	a.checkMu.Lock()
	defer a.checkMu.Unlock()
	a.stopCheckerLocked()
}

func (a *App) stopCheckerLocked() {
	if a.checkEnd != nil {
		a.checkEnd()
		a.checkWG.Wait()
		a.checkEnd = nil
	}
}
