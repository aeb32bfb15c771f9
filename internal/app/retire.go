package app

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/gateway"
)

// retiring counts the runtimes a reload (or a discovery change) retired
// whose goroutines joinRetired has not joined yet
// (sluice_runtimes_retiring), and lets a caller wait for none.
type retiring struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0; nil while nobody waits
}

func (r *retiring) add() {
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
}

func (r *retiring) done() {
	r.mu.Lock()
	if r.n--; r.n == 0 && r.zero != nil {
		close(r.zero)
		r.zero = nil
	}
	r.mu.Unlock()
}

func (r *retiring) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// wait returns true once no retired runtime is left to join, false when
// ctx ends first.
func (r *retiring) wait(ctx context.Context) bool {
	r.mu.Lock()
	if r.n == 0 {
		r.mu.Unlock()
		return true
	}
	if r.zero == nil {
		r.zero = make(chan struct{})
	}
	zero := r.zero
	r.mu.Unlock()
	select {
	case <-zero:
		return true
	case <-ctx.Done():
		return false
	}
}

// joinRetired joins, in the background, the goroutines of prev that its
// Retire (at the swap, under reloadMu) stopped without waiting for:
// gateway.Runtime.Join, its forwarder's call workers. Before, nobody
// waited for them between the reload and shutdown. The reload does not
// wait: a worker busy with a stream's first write to a slow client may
// hold on up to server.send_timeout. Past joinBound the join logs a
// warning and goes on waiting (the gauge still counts the runtime);
// Run's end stops it (drains.ctx), and shutdown joins every worker left
// (joinCallWorkers). Called with reloadMu held.
func (a *App) joinRetired(prev, next *gateway.Runtime) {
	a.retiring.add()
	a.drains.wg.Add(2)
	ctx, cancel := context.WithCancel(a.drains.ctx) // Run's end stops the wait: shutdown joins what is left
	joined := make(chan error, 1)
	go func() {
		defer a.drains.wg.Done()
		joined <- prev.Join(ctx, next)
	}()
	go func() {
		defer a.drains.wg.Done()
		defer a.retiring.done()
		defer cancel()
		bound := joinBound(prev)
		end, stop := a.timer(bound)
		defer stop()
		select {
		case <-joined:
			return
		case <-end:
		}
		a.log.Warn("config reload: a retired runtime's call workers still running past their bound; waiting on",
			"bound", bound.String(), "workers", prev.CallWorkers())
		if err := <-joined; err == nil {
			a.log.Info("config reload: the retired runtime's call workers ended")
		}
	}()
}

// joinBound is how long a retired runtime's call workers may take to end:
// the longest call on one, a stream's first write to a client accepting
// no bytes (server.send_timeout; 1 s when unset), plus a second for the
// worker's return.
func joinBound(rt *gateway.Runtime) time.Duration {
	return max(rt.Config.Server.SendTimeout.D(), time.Second) + time.Second
}

// registerRetiringGauge exports the runtimes retired by a reload whose
// goroutines are not joined yet.
func registerRetiringGauge(reg prometheus.Registerer, r *retiring) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_runtimes_retiring",
		Help: "Runtimes retired by a config reload or a discovery change whose call workers have not all ended yet: 0 within server.send_timeout of a reload."},
		func() float64 { return float64(r.count()) }))
}
