package app

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// Checked is what Check found in a config that would start.
type Checked struct {
	Models, Backends int
}

// Check builds from cfg what a start or a reload builds, aside, and throws
// it away: the TLS certificate pair (tls:), the response cache's levels and every stage of Build (pools,
// breakers, queues, rate limits, the forwarder, the token verifier, which
// reads the static key files and fetches the issuer's key set once,
// logging a failure as a start would). It binds no port, connects to no
// Redis or NATS (both are opened lazily or at Run) and writes nothing.
// `sluice check` runs it, as `nginx -t`, before a deploy or a SIGHUP: an
// error here is one a start would stop on, or a reload refuse. The file's
// warnings (config.Warnings: valid, probably not meant) are logged first.
func Check(cfg *config.Config, logger *slog.Logger) (Checked, error) {
	logConfigWarnings(logger, cfg)
	if _, err := loadCert(cfg.TLS); err != nil {
		return Checked{}, err // a pair a start would refuse, or a reload
	}
	reg := prometheus.NewRegistry()
	resp, err := newResponseCache(cfg.Cache, reg, time.Now, nil, nil)
	if err != nil {
		return Checked{}, err
	}
	defer resp.Close()
	deps := Deps{
		Logger: logger, Registry: reg, Transport: proxy.NewTransportCache(), Now: time.Now,
		Stalls: endpoint.NewStallWatch(endpoint.StallBeat), Rand: routing.NewRand(1),
		QueueWork: make(chan struct{}, 1), Ejections: make(chan struct{}, 1),
		Cache: resp.level, CacheMetrics: resp.metrics, CacheMemo: resp.memo,
	}
	built, err := Build(cfg, deps, nil)
	if err != nil {
		return Checked{}, err // names its key path, as Load's errors do
	}
	defer built.Retire(nil)
	return Checked{Models: len(built.Runtime.Models), Backends: len(built.Runtime.Backends())}, nil
}
