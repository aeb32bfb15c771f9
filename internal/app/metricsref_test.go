package app

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/telemetry"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// docRow is one metric's row in docs/METRICS.md.
type docRow struct {
	typ    string
	labels []string
}

// TestMetricsReferenceMatchesCode keeps docs/METRICS.md true: every
// sluice_* metric the code registers has a row there, every sluice_* name
// the page mentions exists, and the type and label names of each metric a
// gateway with every feature on exposes are the row's.
func TestMetricsReferenceMatchesCode(t *testing.T) {
	rows := readMetricsDoc(t)
	registered := registeredNames(t)
	for name := range registered {
		if _, ok := rows[name]; !ok {
			t.Errorf("%s is registered by the code but has no row in docs/METRICS.md", name)
		}
	}
	for name := range rows {
		if !registered[name] {
			t.Errorf("docs/METRICS.md has a row for %s, which the code does not register", name)
		}
	}
	src, err := os.ReadFile(filepath.Join("..", "..", "docs", "METRICS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`sluice_[a-z0-9_]+`).FindAllString(string(src), -1) {
		if base := metricBase(name); !registered[base] {
			t.Errorf("docs/METRICS.md names %s, which the code does not register", name)
		}
	}

	gathered := gatherEverything(t)
	var unseen []string
	for name, row := range rows {
		mf, ok := gathered[name]
		if !ok {
			unseen = append(unseen, name)
			continue
		}
		if typ := strings.ToLower(mf.GetType().String()); typ != row.typ {
			t.Errorf("%s: docs/METRICS.md says %s, /metrics says %s", name, row.typ, typ)
		}
		if got := labelNames(mf); strings.Join(got, ",") != strings.Join(row.labels, ",") {
			t.Errorf("%s: docs/METRICS.md lists labels %v, /metrics has %v", name, row.labels, got)
		}
	}
	for name := range gathered {
		if strings.HasPrefix(name, "sluice_") {
			if _, ok := rows[name]; !ok {
				t.Errorf("/metrics exposes %s, which docs/METRICS.md lacks", name)
			}
		}
	}
	// A vector has no series until its first event; those the set-up
	// does not reach are checked by name only. Keep this list short.
	sort.Strings(unseen)
	if want := strings.Join(nameOnly, " "); strings.Join(unseen, " ") != want {
		t.Errorf("metrics not exposed by the test's gateway (type and labels unchecked):\n got %v\nwant %v", unseen, nameOnly)
	}
}

// nameOnly are the metrics whose type and labels the test cannot see:
// vectors whose events the set-up does not provoke.
var nameOnly = []string{
	"sluice_discovery_reads_held_total",   // needs a targets file caught half-written
	"sluice_forecast_requests_per_second", // after the forecaster's first tick
	"sluice_forecast_tokens_per_second",
	"sluice_health_probes_discounted_total", // needs the gateway stalled across a probe's deadline
	"sluice_hedges_total",                   // needs a hedged stream
	"sluice_slot_waits_total",               // needs every backend at its limit
}

// metricBase strips a histogram's series suffixes.
func metricBase(name string) string {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		name = strings.TrimSuffix(name, s)
	}
	return name
}

func labelNames(mf *dto.MetricFamily) []string {
	set := map[string]bool{}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			set[l.GetName()] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// readMetricsDoc parses the page's table rows:
// | `name` | type | `label`, `label` (or —) | meaning |
func readMetricsDoc(t *testing.T) map[string]docRow {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "docs", "METRICS.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]docRow{}
	label := regexp.MustCompile("`([a-z_]+)`")
	for _, line := range strings.Split(string(src), "\n") {
		if !strings.HasPrefix(line, "| `sluice_") {
			continue
		}
		cols := strings.Split(line, "|")
		if len(cols) < 5 {
			t.Fatalf("docs/METRICS.md: short row %q", line)
		}
		name := strings.Trim(strings.TrimSpace(cols[1]), "`")
		if _, dup := rows[name]; dup {
			t.Errorf("docs/METRICS.md: %s has two rows", name)
		}
		r := docRow{typ: strings.TrimSpace(cols[2])}
		for _, m := range label.FindAllStringSubmatch(cols[3], -1) {
			r.labels = append(r.labels, m[1])
		}
		sort.Strings(r.labels)
		rows[name] = r
	}
	if len(rows) == 0 {
		t.Fatal("docs/METRICS.md has no metric rows")
	}
	return rows
}

// registeredNames are the sluice_* names the product code hands to
// Prometheus (an Opts' Name, a Desc's name; admission's d helper),
// whether or not a feature is on. The simulator's own metrics are not
// the gateway's.
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	lit := regexp.MustCompile(`(?:Name:\s*|NewDesc\(\s*|\bd\(\s*)"(sluice_[a-z0-9_]+)"`)
	names := map[string]bool{}
	root := filepath.Join("..", "..", "internal")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path == filepath.Join(root, "sim") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllStringSubmatch(string(src), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 100 {
		t.Fatalf("found %d metric names in the code: the scan is broken", len(names))
	}
	return names
}

// gatherEverything runs a gateway with every feature that registers
// metrics on (cache and rate limits on Redis, the embedded job queue,
// discovery, the forecast, API keys, the log writer's metrics), sends it
// traffic (a bad key, an unknown model, a retry) and returns its
// registry's families by name.
func gatherEverything(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	be := backend(t, "a")
	// bad answers requests 502 (retried on the next backend) and its
	// health probes 200 (so it stays in the pool).
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	t.Cleanup(bad.Close)
	redis := redistest.Start(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	src := fmt.Sprintf(`listen: 127.0.0.1:0
log: {access: false}
auth:
  keys: [{key: k-good}]
  jwt: {issuer: https://idp.test/, audience: sluice, jwks_url: %s}
queue: {enabled: true, data_dir: %s}
forecast: {enabled: true, snapshot: %s}
cache:
  redis: {addrs: [%s], timeout: 10s}
rate_limits:
  store: redis
  redis: {addrs: [%s], timeout: 10s}
  per_ip: {requests: "rate=1000r/s burst=1000"}
models:
  - name: m
    backends:
      - url: %s
  - name: r
    policy: round_robin
    backends:
      - url: %s
      - url: %s
  - name: d
    discovery:
      - type: file
        path: %s
  - name: f
    discovery:
      - type: file
        path: %s
`, jwttest.New(t).URL(), filepath.Join(dir, "data"), filepath.Join(dir, "forecast.json"), redis.Addr, redis.Addr, be.URL, bad.URL, be.URL,
		filepath.Join(dir, "targets.json"), filepath.Join(dir, "missing.json"))
	writeTargets(t, filepath.Join(dir, "targets.json"), be.URL)
	writeFile(t, path, src)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logBuf := telemetry.NewBufferedWriter(io.Discard, 64<<10, time.Second)
	t.Cleanup(func() { logBuf.Close() })
	a, err := New(cfg, Source{Path: path, LogMetrics: logBuf.Collector()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	url, _ := serveApp(t, a)
	// Discovery reads its files in the background: a vector has series
	// once the first update and the first failure are counted.
	eventually(t, "discovery's first update and failure", func() bool {
		return counterValue(t, a, "sluice_discovery_updates_total") >= 1 && counterValue(t, a, "sluice_discovery_failures_total") >= 1
	})
	for _, r := range []struct{ key, body string }{
		{"k-good", `{"model":"m","messages":[]}`}, {"k-good", `{"model":"m","messages":[]}`},
		{"k-good", `{"model":"nope"}`}, {"k-bad", `{"model":"m","messages":[]}`},
		// Round robin over bad and a live backend: one of the two
		// starts on bad and is retried.
		{"k-good", `{"model":"r","messages":[]}`}, {"k-good", `{"model":"r","messages":[]}`},
	} {
		req, err := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+r.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	mfs, err := a.deps.Registry.(*prometheus.Registry).Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}
