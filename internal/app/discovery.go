package app

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/discovery"
	"github.com/sluice-gw/sluice/internal/endpoint"
)

// drainPoll is how often a drain looks whether its backend's last request
// ended; it bounds how long idle connections outlive that.
const drainPoll = 100 * time.Millisecond

// discoverySources are cfg's discovery sources, by model.
func discoverySources(cfg *config.Config) map[string]discovery.Sources {
	out := map[string]discovery.Sources{}
	for i := range cfg.Models {
		m := &cfg.Models[i]
		if len(m.Discovery) == 0 {
			continue
		}
		srcs := discovery.Sources{Key: discoveryKey(m.Discovery)}
		for j, d := range m.Discovery {
			tmpl := discovery.Template{Scheme: d.Scheme, Spec: endpoint.Spec{
				Weight: d.Weight, MaxConcurrency: d.MaxConcurrency, APIKey: d.APIKey, UpstreamModel: d.UpstreamModel, Engine: d.Engine}}
			if d.TLS != nil {
				tmpl.Spec.TLS = fmt.Sprintf("models[%d].discovery[%d].tls", i, j)
			}
			switch d.Type {
			case "file":
				srcs.List = append(srcs.List, discovery.File{Path: d.Path, Template: tmpl})
			case "dns":
				lo, hi := d.DNSIntervals()
				srcs.List = append(srcs.List, discovery.DNS{Name: d.Name, Record: d.Record, Port: d.Port,
					Server: d.Server, MinInterval: lo, MaxInterval: hi, Template: tmpl})
			case "consul":
				srcs.List = append(srcs.List, consulSource(d.Consul, tmpl))
			case "kubernetes":
				srcs.List = append(srcs.List, discovery.Kubernetes{Namespace: d.Namespace, Service: d.Service,
					PortName: d.PortName, Port: d.Port, Kubeconfig: d.Kubeconfig, Template: tmpl})
			}
		}
		out[m.Name] = srcs
	}
	return out
}

// discoveryKey tells a model's discovery blocks apart across reloads: by
// value, the tls blocks' included (%+v would print their pointers, new at
// every reload, and restart every source).
func discoveryKey(ds []config.Discovery) string {
	var b strings.Builder
	for _, d := range ds {
		t := d.TLS
		d.TLS = nil
		fmt.Fprintf(&b, "%+v", d)
		if t != nil {
			fmt.Fprintf(&b, " tls%+v", *t)
		}
		b.WriteByte(';')
	}
	return b.String()
}

// consulSource is a consul discovery block as a source; the token is
// read from its file at every query, so a rotated token is used.
func consulSource(c config.ConsulDiscovery, tmpl discovery.Template) discovery.Consul {
	src := discovery.Consul{Service: c.Service, Tags: c.Tags, Datacenter: c.Datacenter, Address: c.Address,
		Scheme: c.Scheme, Wait: c.Wait.D(), Template: tmpl}
	switch token := c.Token; {
	case c.TokenFile != "":
		src.Token = discovery.TokenFile(c.TokenFile)
	case token != "":
		src.Token = func() (string, error) { return token, nil }
	}
	return src
}

// startDiscovery starts the running config's discovery sources.
func (a *App) startDiscovery() {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.discovering = true
	a.disc.Sync(discoverySources(a.gw.Runtime().Config))
}

// stopDiscovery stops every source and waits for them.
func (a *App) stopDiscovery() {
	a.reloadMu.Lock()
	a.discovering = false
	a.reloadMu.Unlock()
	a.disc.Stop()
}

// runDiscovery rebuilds the runtime each time a discovery source reports
// a new set, until ctx ends.
func (a *App) runDiscovery(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.disc.Changed():
			a.rediscover()
		}
	}
}

// rediscover rebuilds the running config's runtime with the sets the
// sources know now, as a reload does: built aside, committed, swapped.
// A build that fails keeps the running runtime.
func (a *App) rediscover() {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	cfg := a.gw.Runtime().Config
	next, err := Build(cfg, a.deps, a.built)
	if err != nil {
		a.log.Error("discovery: rebuilding the pools failed; keeping the running ones", "error", err.Error())
		return
	}
	prev := a.gw.Runtime()
	a.install(next)
	a.logPoolChanges(prev, next.Runtime, "discovery")
}

// install commits next and swaps it in for a.built; backends that left
// drain. Called with reloadMu held.
func (a *App) install(next *Built) {
	prev := a.built
	next.Commit()
	for _, be := range next.Runtime.Backends() {
		be.Rejoin() // one back while it drained serves again
	}
	a.gw.Swap(next.Runtime)
	a.built = next
	prev.Retire(next)
	a.joinRetired(prev.Runtime, next.Runtime)
	// A backend back while it still drains (an endpoint that flapped:
	// unready for a probe, a file rewritten twice) was taken back by
	// Build (reuse): its drain ends here, without cutting what runs on it.
	for _, be := range next.Runtime.Backends() {
		if back, ok := a.drains.running[be]; ok {
			close(back)
			delete(a.drains.running, be)
			a.log.Info("drain: removed backend is back; its requests run on", "backend", be.Name(), "inflight", be.Inflight())
		}
	}
	kept := backendSet(next.Runtime)
	for _, be := range prev.Runtime.Backends() {
		if !kept[be] {
			be.Leave() // before the drain first reads its in-flight count
			a.drain(be, drainBound(next.Runtime.Config))
		}
	}
	if next.retiredTLS {
		a.closeRetiredTLS(next.Runtime.Config.ShutdownGrace.D())
	}
}

// closeRetiredTLS closes, once grace has passed (or the app stops), the
// idle connections the requests that were running on retired TLS
// transports handed back (their idle ones were closed at the swap):
// where they were kept for their idle timeout, made under the old CA or
// client certificate. A request running longer hands its connection
// back to a transport nothing uses, which closes it at its idle timeout.
func (a *App) closeRetiredTLS(grace time.Duration) {
	a.drains.wg.Add(1)
	go func() {
		defer a.drains.wg.Done()
		end, stop := a.timer(grace)
		defer stop()
		select {
		case <-end:
		case <-a.drains.ctx.Done():
		}
		a.deps.Transport.CloseRetired()
	}()
}

// drainBound is how long the requests running on a backend that left its
// pool may go on: as long as any request may (timeouts.total), so that
// only their own bounds (total, stream_idle, the client) end them, as
// Envoy drains a removed host's connection pools and nginx's old workers
// finish their requests after a reload; shutdown_grace when longer. It
// was shutdown_grace (30 s by default), which cut every stream longer
// than that on a backend a targets file, DNS, Consul or Kubernetes
// dropped, while the backend was still answering it. A request sent
// before the removal ends by its deadline (its start + total), so the
// retirement at the bound cuts only what outlives its own (a hedge's
// losing leg).
func drainBound(cfg *config.Config) time.Duration {
	return max(cfg.ShutdownGrace.D(), cfg.Timeouts.Total.D())
}

// drains are the backends leaving, each until its last request ended or
// the grace passed.
type drains struct {
	ctx    context.Context // ended by Run's end: drains cut at once
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// running are the drains under way, by backend, each with a channel
	// closed when its backend comes back into a pool (install); under
	// App.reloadMu, which also holds a drain's end (Retire) apart from a
	// build taking the backend back.
	running map[*endpoint.Backend]chan struct{}
}

// drain lets the requests still running on be (which no runtime routes to
// any more) finish within grace (drainBound), then cuts those left
// (Retire) and closes its idle upstream connections (the lean client's to
// it only: the warm ones to the backends that stay are kept). A backend
// that comes back before then is not retired: its requests run on.
// Called with reloadMu held.
func (a *App) drain(be *endpoint.Backend, grace time.Duration) {
	if a.drains.running == nil {
		a.drains.running = map[*endpoint.Backend]chan struct{}{}
	}
	back := make(chan struct{})
	a.drains.running[be] = back
	a.drains.wg.Add(1)
	go func() {
		defer a.drains.wg.Done()
		idle := a.waitIdle(be, grace, back)
		a.reloadMu.Lock()
		if a.drains.running[be] != back { // back in a pool (and maybe out again: a newer drain's)
			a.reloadMu.Unlock()
			return
		}
		delete(a.drains.running, be)
		if !idle {
			a.log.Warn("drain: grace over; cutting the requests left on a removed backend",
				"backend", be.Name(), "inflight", be.Inflight())
		}
		be.Retire()
		a.reloadMu.Unlock()
		a.deps.Transport.CloseIdleTo(be.Spec().URL)
		a.log.Info("drain: removed backend drained", "backend", be.Name())
	}()
}

// waitIdle waits until be has no request in flight (true), or until grace
// passes, the backend comes back (back closed) or the app stops (false).
// Both waits are on the app's injected clock (a.timer, a.ticker), so a
// test drives the grace instead of sleeping through it.
func (a *App) waitIdle(be *endpoint.Backend, grace time.Duration, back <-chan struct{}) bool {
	end, stopEnd := a.timer(grace)
	defer stopEnd()
	tick, stopTick := a.ticker(drainPoll)
	defer stopTick()
	for be.Inflight() > 0 || be.CPUInflight() > 0 {
		select {
		case <-tick:
		case <-end:
			return false
		case <-back:
			return false
		case <-a.drains.ctx.Done():
			return false
		}
	}
	return true
}
