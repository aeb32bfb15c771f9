package gateway

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/routing"
)

// Deps mirrors app.Deps (field for field, so one converts to the other):
// this package's tests build runtimes from configs as the app does, but
// cannot import internal/app, which imports this package.
type Deps struct {
	Logger       *slog.Logger
	Registry     prometheus.Registerer
	Cache        cache.Level
	CacheMetrics *cache.Metrics
	CacheMemo    *cache.Memo
	Transport    *proxy.Transport
	Redis        *redisconn.Clients
	Background   *Background
	Now          func() time.Time
	Stalls       *endpoint.StallWatch
	QueueWork    chan struct{}
	Ejections    chan struct{}
	AfterFunc    func(time.Duration, func()) proxy.Timer
	Rand         routing.Rand
	Rings        *routing.RingStats
	Discovered   func(model string) []endpoint.Spec
	FailAt       func(stage string) error
}

// buildRuntime is app.Build followed by Built.Commit, installed once by
// TestMain (main_test.go, package gateway_test, which may import app)
// before any test runs.
var buildRuntime func(cfg *config.Config, deps Deps, prev *Runtime) (*Runtime, error)

// SetBuild installs the builder; TestMain only.
func SetBuild(f func(cfg *config.Config, deps Deps, prev *Runtime) (*Runtime, error)) {
	buildRuntime = f
}

// Build makes a runtime from cfg the way internal/app does, taking over
// from prev.
func Build(cfg *config.Config, deps Deps, prev *Runtime) (*Runtime, error) {
	return buildRuntime(cfg, deps, prev)
}
