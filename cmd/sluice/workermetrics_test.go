package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-gw/sluice/internal/app"
	"github.com/sluice-gw/sluice/internal/config"
)

// A `sluice worker` with --metrics-listen serves the metrics of the jobs
// it runs: before, it registered none, and what its jobs did showed only
// in its log. A real gateway (its own workers off) takes an async job;
// the separate worker, asking the gateway for its queue, runs it, and
// its /metrics counts the execution, the queue drained, with the
// tracker's batch gauges and the Go collectors beside. Other paths are
// 404; without the flag no listener is bound (the default: off).
func TestWorkerServesItsMetrics(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	defer be.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	cfgText := fmt.Sprintf(`listen: 127.0.0.1:0
log: {access: false, level: warn}
health: {active: {interval: 0s}}
admin: {token: worker-secret}
queue: {data_dir: %s, worker_disabled: true}
models:
  - name: m
    backends:
      - url: %s
`, filepath.Join(dir, "data"), be.URL)
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(cfg, app.Source{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	adminAddr, err := a.ListenAdmin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gwCtx, stopGW := context.WithCancel(context.Background())
	gwDone := make(chan error, 1)
	go func() { gwDone <- a.Run(gwCtx, ln) }()
	defer func() { stopGW(); <-gwDone }()
	gwURL := "http://" + ln.Addr().String()
	waitHTTP(t, gwURL+"/readyz")

	f, err := parseWorkerFlags([]string{"--admin", adminAddr.String(), "--token", "worker-secret",
		"--metrics-listen", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	bound := make(chan net.Addr, 1)
	f.metricsBound = func(a net.Addr) { bound <- a }
	wctx, stopWorker := context.WithCancel(context.Background())
	wDone := make(chan error, 1)
	logs := &syncBuffer{}
	go func() { wDone <- f.run(wctx, logs) }()
	var metricsURL string
	select {
	case addr := <-bound:
		metricsURL = "http://" + addr.String() + "/metrics"
	case err := <-wDone:
		t.Fatalf("worker ended before it served: %v\n%s", err, logs.String())
	}
	defer func() {
		stopWorker()
		if err := <-wDone; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()

	req, err := http.NewRequest(http.MethodPost, gwURL+"/v1/chat/completions",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "respond-async")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("async submit: %d", resp.StatusCode)
	}

	var text string
	deadline := time.Now().Add(time.Minute) // a hang guard: the job runs in another goroutine and NATS
	for {
		text = getBody(t, metricsURL)
		if metricValue(text, "sluice_jobs_executed_total") == 1 && metricValue(text, "sluice_jobs_backlog") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker's /metrics never counted the job's run:\n%s\nlog:\n%s", grepSluice(text), logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for name, want := range map[string]float64{"sluice_jobs_retried_total": 0, "sluice_jobs_dead_lettered_total": 0} {
		if v := metricValue(text, name); v != want {
			t.Errorf("%s %v, want %v", name, v, want)
		}
	}
	for _, name := range []string{"sluice_jobs_answers_too_large_total", "sluice_jobs_webhooks_failed_total",
		"sluice_jobs_tracked_batches", "sluice_jobs_batch_lines_limit", "sluice_jobs_backlog", "go_goroutines"} {
		if metricValue(text, name) < 0 {
			t.Errorf("the worker's /metrics lacks %s", name)
		}
	}
	resp, err = http.Get(strings.TrimSuffix(metricsURL, "/metrics") + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /status on the worker's metrics listener: %d, want 404", resp.StatusCode)
	}
}

// The default is off: parsed without the flag, nothing to bind; a value
// that is not host:port is a usage error naming the flag.
func TestWorkerMetricsListenDefaultAndCheck(t *testing.T) {
	f, err := parseWorkerFlags([]string{"--admin", "127.0.0.1:1", "--token", "t"})
	if err != nil {
		t.Fatal(err)
	}
	if ln, err := listenWorkerMetrics(f.metricsListen); f.metricsListen != "off" || ln != nil || err != nil {
		t.Fatalf("default --metrics-listen %q bound %v (%v); want off, nothing bound", f.metricsListen, ln, err)
	}
	code, _, errs := runCLI("worker", "--admin", "127.0.0.1:1", "--token", "t", "--metrics-listen", "9092")
	if code != 2 || !strings.Contains(errs, "--metrics-listen \"9092\": want host:port") {
		t.Errorf("exit %d, stderr %q; want 2 naming --metrics-listen", code, errs)
	}
}

// metricValue is the first sample of name (no labels, or the first
// labelled one) in a text exposition; -1 when absent.
func metricValue(text, name string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(?:\{[^}]*\})? (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

// grepSluice is text's sluice_* sample lines.
func grepSluice(text string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "sluice_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A scraper that asks for /metrics and never reads the answer is cut once
// it has taken no bytes for the send timeout, freeing its connection
// slot. Before, the listener set no write deadline: sixteen such
// scrapers (the cap) of an answer larger than the sockets' buffers held
// every slot, and their handler goroutines, until the worker stopped, and
// every later scrape was closed at accept. The answer is large for the
// first sixteen requests only (the stalled ones), small after, so the
// scrape that finds a free slot reads its answer whatever the machine's
// load.
func TestWorkerMetricsCutsStalledScrapers(t *testing.T) {
	big := bigFamilies(16 << 20)
	var asked atomic.Int32
	g := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		if asked.Add(1) <= workerMetricsConns {
			return big, nil
		}
		return big[:1], nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := serveWorkerMetrics(ln, workerMetricsHandler(g, 100*time.Millisecond), slog.New(slog.DiscardHandler))
	defer stop()
	for range workerMetricsConns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(4 << 10) // reads nothing: the kernel's buffer is all it takes
		}
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: w\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	// Each stalled request has been asked its answer before the next
	// scrape counts (accepts are in connection order; the gatherer is
	// asked once a request's head is read).
	hang := time.Now().Add(time.Minute) // a hang guard, not a bound on the cut
	for asked.Load() < workerMetricsConns {
		if time.Now().After(hang) {
			t.Fatalf("only %d of the %d stalled scrapers were served", asked.Load(), workerMetricsConns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	for {
		resp, err := client.Get("http://" + ln.Addr().String() + "/metrics")
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK && strings.Contains(string(body), "stall_test_0") {
				return
			}
			err = fmt.Errorf("%d %v", resp.StatusCode, rerr)
		}
		if time.Now().After(hang) {
			t.Fatalf("the stalled scrapers still hold every slot after a minute: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bigFamilies is about size bytes of text-format gauges, one series per
// family, each with a long label.
func bigFamilies(size int) []*dto.MetricFamily {
	label := strings.Repeat("x", 1000)
	var fams []*dto.MetricFamily
	for i := 0; i*1050 < size; i++ {
		name, help, v := fmt.Sprintf("stall_test_%d", i), "h", 1.0
		lname := "l"
		typ := dto.MetricType_GAUGE
		fams = append(fams, &dto.MetricFamily{Name: &name, Help: &help, Type: &typ,
			Metric: []*dto.Metric{{Label: []*dto.LabelPair{{Name: &lname, Value: &label}}, Gauge: &dto.Gauge{Value: &v}}}})
	}
	return fams
}
