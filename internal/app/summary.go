package app

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/health"
)

// logSummary says at start what this gateway serves and how: one line per
// model (policy, backends and how each is health-checked, discovery
// sources, fallbacks, admission objective), one for the job queue and
// one for the listeners, so a first look at the log answers "is it using
// my config?".
func (a *App) logSummary(listen string) {
	rt := a.gw.Runtime()
	cfg := rt.Config
	for i := range cfg.Models {
		m := &cfg.Models[i]
		p := rt.Pools[m.Name]
		attrs := []any{"model", m.Name, "policy", p.Policy, "backends", a.backendSummaries(p.Backends, cfg.Health.Active)}
		if len(m.Discovery) > 0 {
			attrs = append(attrs, "discovery", discoverySummaries(m.Discovery))
		}
		if len(m.Fallbacks) > 0 {
			attrs = append(attrs, "fallbacks", m.Fallbacks)
		}
		if cfg.Admission.Enabled {
			slo := cfg.SLOFor(m)
			attrs = append(attrs, "admission", "on", "max_wait", slo.Interactive.String(), "max_wait_batch", slo.Batch.String())
		} else {
			attrs = append(attrs, "admission", "off")
		}
		a.log.Info("serving model", attrs...)
	}
	q := a.queueInfo
	a.log.Info("job queue", "mode", q.Mode, "nats", gateway.RedactURLs(q.URL))
	admin := "off"
	a.adminMu.Lock()
	if a.adminLn != nil {
		admin = "http://" + a.adminLn.Addr().String()
	}
	a.adminMu.Unlock()
	a.log.Info("sluice ready to serve", "listen", listen, "admin", admin, "admin_token", cfg.Admin.Token != "", "worker_token", cfg.Admin.WorkerToken != "",
		"active_health_checks", activeSummary(cfg.Health.Active))
}

// backendSummaries renders each backend as "host:port (engine, probe)".
func (a *App) backendSummaries(bs []*endpoint.Backend, active config.Active) []string {
	out := make([]string, 0, len(bs))
	for _, b := range bs {
		spec := b.Spec()
		engine := spec.Engine
		if engine == "" {
			engine = "engine unset"
		}
		probe := "not probed"
		if plan := health.PlanFor(spec, active.Path); active.Interval > 0 && plan.Path != "" {
			probe = "probed at " + plan.Path
			if plan.Auto {
				probe += " unless it answers 404"
			}
		}
		out = append(out, fmt.Sprintf("%s (%s, %s)", b.Name(), engine, probe))
	}
	return out
}

func discoverySummaries(ds []config.Discovery) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		switch d.Type {
		case "file":
			out = append(out, "file "+d.Path)
		case "dns":
			out = append(out, fmt.Sprintf("dns %s %s", cmp.Or(strings.ToUpper(d.Record), "A"), d.Name))
		case "consul":
			out = append(out, "consul service "+d.Consul.Service)
		default:
			out = append(out, d.Type)
		}
	}
	return out
}

func activeSummary(a config.Active) string {
	if a.Interval <= 0 {
		return "off"
	}
	return fmt.Sprintf("every %s at %s (by engine)", a.Interval.D(), a.Path)
}
