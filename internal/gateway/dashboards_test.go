package gateway

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/discovery"
	"github.com/sluice-gw/sluice/internal/jobs"
)

// TestDashboardAndAlertsUseRealMetrics keeps deploy/ honest: every sluice_*
// metric the Grafana dashboard and the alert rules query must exist on a
// running gateway's /metrics.
func TestDashboardAndAlertsUseRealMetrics(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(closedURL(t), be.URL) // the first request is retried on the second backend
	cfg.RateLimits.Global = config.RateRule{Requests: limitPtr(t, "rate=1000r/s burst=10")}
	srv, gw := startGatewayWith(t, cfg, func(d *Deps) {
		m, err := cache.NewMetrics(d.Registry)
		if err != nil {
			t.Fatal(err)
		}
		d.CacheMetrics = m
		// The job queue's counters, registered as the app does.
		nats, err := jobs.StartEmbedded(jobs.EmbeddedOptions{Dir: t.TempDir(), Port: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nats.Shutdown(); nats.WaitForShutdown() })
		store, err := jobs.Open(context.Background(), jobs.Options{URL: nats.ClientURL(), Registerer: d.Registry})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		registerDiscoveryMetrics(t, d)
	})
	readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody))
	readAll(t, post(t, srv.URL+"/v1/chat/completions", `{"model":"nope"}`)) // an error by reason
	resp, err := http.Get(adminServer(t, gw).URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exposed := readAll(t, resp)

	files := []string{
		filepath.Join("..", "..", "deploy", "grafana", "sluice-dashboard.json"),
		filepath.Join("..", "..", "deploy", "prometheus", "sluice-alerts.yml"),
	}
	metric := regexp.MustCompile(`sluice_[a-z_]+`)
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".json") && !json.Valid(src) {
			t.Fatalf("%s is not valid JSON", f)
		}
		for _, name := range metric.FindAllString(string(src), -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			if name == "sluice_ratelimit_store_degraded" || name == "sluice_ratelimit_store_errors_total" {
				continue // registered only with the Redis store
			}
			if !strings.Contains(exposed, "\n"+base) && !strings.Contains(exposed, "# TYPE "+base+" ") {
				t.Errorf("%s uses %s, which /metrics does not expose", filepath.Base(f), name)
			}
		}
	}
}

// registerDiscoveryMetrics registers discovery's metrics as the app does
// (discovery.NewManager on the gateway's registry) and makes a targets
// file source fail once: a metric vector is exposed only once it has a
// series, so the alert on sluice_discovery_failures_total needs a failure.
func registerDiscoveryMetrics(t *testing.T, d *Deps) {
	t.Helper()
	disc := discovery.NewManager(d.Registry, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	t.Cleanup(disc.Stop)
	failed := make(chan struct{})
	missing := discovery.File{Path: filepath.Join(t.TempDir(), "missing.json")}
	disc.Sync(map[string]discovery.Sources{"discovered": {Key: "k", List: []discovery.Source{
		firstFailure{src: missing, failed: failed},
	}}})
	<-failed
}

// firstFailure runs src and closes failed after src's first failure has
// reached the real sink (so its counter is incremented).
type firstFailure struct {
	src    discovery.Source
	failed chan struct{}
}

func (f firstFailure) Run(ctx context.Context, sink discovery.Sink) {
	f.src.Run(ctx, &closeOnFail{Sink: sink, failed: f.failed})
}

type closeOnFail struct {
	discovery.Sink
	failed chan struct{}
	once   sync.Once
}

func (c *closeOnFail) Fail(err error) {
	c.Sink.Fail(err)
	c.once.Do(func() { close(c.failed) })
}
