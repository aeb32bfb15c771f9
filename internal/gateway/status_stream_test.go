package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/jobs"
)

// statusOf fetches and decodes /status.
func statusOf(t *testing.T, admin string, hdr ...string) statusDoc {
	t.Helper()
	code, _, body := get(t, admin+"/status", hdr...)
	if code != 200 {
		t.Fatalf("/status: %d %s", code, body)
	}
	var doc statusDoc
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("/status is not the documented JSON: %v\n%s", err, body)
	}
	return doc
}

// /status carries what the dashboard shows: per model demand, capacity,
// SLO, TTFT quantiles and error counts; per backend state, breaker and
// TTFT; the cache and the job queue.
func TestStatusDocument(t *testing.T) {
	be := newOKBackend(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // connection refused from now on
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 4
	cfg.Models = append(cfg.Models, config.Model{Name: "m2", Policy: "round_robin", Backends: []config.Backend{{URL: dead.URL}}})
	cfg.Health.MaxFails = 1
	cfg.Health.FailTimeout = config.Duration(time.Hour)
	srv, gw := startGateway(t, cfg)
	admin := adminServer(t, gw)

	for i := 0; i < 6; i++ {
		readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody))
	}
	m2Body := strings.Replace(chatBody, `"m1"`, `"m2"`, 1)
	readAll(t, post(t, srv.URL+"/v1/chat/completions", m2Body)) // fails, ejects
	readAll(t, post(t, srv.URL+"/v1/chat/completions", m2Body)) // a last-resort trial, refused again

	doc := statusOf(t, admin.URL)
	if len(doc.Models) != 2 || doc.Time.IsZero() || doc.Forecast != nil {
		t.Fatalf("document: %+v", doc)
	}
	m, m2 := doc.Models[0], doc.Models[1]
	if m.RequestsTotal != 6 || len(m.Errors) != 0 || m2.RequestsTotal != 2 || sum(m2.Errors) != 2 {
		t.Errorf("m1 requests_total %d errors %v; m2 %d %v: want 6 served, 2 failed", m.RequestsTotal, m.Errors, m2.RequestsTotal, m2.Errors)
	}
	if m.TTFT.Samples != 6 || m.TTFT.P50MS <= 0 || m.TTFT.P99MS < m.TTFT.P50MS || m2.TTFT.Samples != 0 {
		t.Errorf("ttft m1 %+v m2 %+v, want 6 samples on m1", m.TTFT, m2.TTFT)
	}
	if m.SLO.InteractiveMS <= 0 {
		t.Errorf("slo %+v", m.SLO)
	}
	if m.Demand.Capacity != 4 || m.Demand.InFlight != 0 || m.Demand.Queued != 0 || m2.Demand.Capacity != 0 {
		t.Errorf("demand m1 %+v m2 %+v: want capacity 4 and 0 (its only backend is ejected)", m.Demand, m2.Demand)
	}
	if b := m2.Backends[0]; b.State != "ejected" || b.Failures != 2 {
		t.Errorf("dead backend: %+v, want ejected", b)
	}
	// An operator reads why it is out and until when, not only "ejected".
	if why := m2.Backends[0].Why; !strings.HasPrefix(why, "passive health check: 1 failed requests within 1h0m0s (health.max_fails, health.fail_timeout); tried again from 20") {
		t.Errorf("dead backend's why = %q, want the passive ejection's bound and end", why)
	}
	if b := m.Backends[0]; b.State != "healthy" || b.Why != "" || b.TTFT.Samples != 6 || b.Limit != 4 || b.Scraped != nil {
		t.Errorf("live backend: %+v", b)
	}
	if doc.Cache == nil || doc.Cache.Enabled || doc.Jobs == nil || doc.Jobs.Enabled || doc.Jobs.Backlog != nil {
		t.Errorf("cache %+v jobs %+v: both off in this config", doc.Cache, doc.Jobs)
	}
	if m.DrainingBackends == nil || m.Backends == nil {
		t.Error("lists must be [] rather than null, so scripts can iterate them")
	}
}

func sum(m map[string]uint64) (n uint64) {
	for _, v := range m {
		n += v
	}
	return n
}

// streamRig is a gateway whose /status/stream ticks only when the test
// sends on the channel handed out per watcher.
type streamRig struct {
	admin   *httptest.Server
	gw      *Gateway
	tickers chan chan time.Time
}

func newStreamRig(t *testing.T, cfg *config.Config) *streamRig {
	rig := &streamRig{tickers: make(chan chan time.Time, maxStatusWatchers+1)}
	_, rig.gw = startGateway(t, cfg)
	rig.gw.streams = newStatusStreams(func(time.Duration) (<-chan time.Time, func()) {
		ch := make(chan time.Time)
		rig.tickers <- ch
		return ch, func() {}
	})
	rig.admin = adminServer(t, rig.gw)
	t.Cleanup(rig.gw.CloseStreams) // before the server's Close waits for the handlers
	return rig
}

// watch opens a stream; events delivers each event's JSON.
func (rig *streamRig) watch(t *testing.T, ctx context.Context, hdr ...string) (*http.Response, <-chan statusDoc) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rig.admin.URL+"/status/stream", nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan statusDoc, 4)
	if resp.StatusCode != 200 {
		resp.Body.Close()
		close(events)
		return resp, events
	}
	go func() {
		defer close(events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		name := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && name == "status":
				var doc statusDoc
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &doc) == nil {
					events <- doc
				}
			}
		}
	}()
	return resp, events
}

func next(t *testing.T, events <-chan statusDoc) statusDoc {
	t.Helper()
	select {
	case doc, ok := <-events:
		if !ok {
			t.Fatal("stream ended")
		}
		return doc
	case <-time.After(30 * time.Second): // a hang, not a timing assertion
		t.Fatal("no event")
	}
	return statusDoc{}
}

// The stream sends the /status document at once and on every tick, with
// the numbers of that moment; it needs the admin token like /status.
func TestStatusStreamSendsOnEachTick(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Admin.Token = "tok"
	rig := newStreamRig(t, cfg)
	srv := httptest.NewServer(rig.gw)
	t.Cleanup(srv.Close)

	if resp, _ := rig.watch(t, context.Background()); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", resp.StatusCode)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, events := rig.watch(t, ctx, "Authorization", "Bearer tok")
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers: %v", resp.Header)
	}
	tick := <-rig.tickers
	if doc := next(t, events); doc.Models[0].RequestsTotal != 0 {
		t.Fatalf("first event: %+v", doc.Models[0])
	}
	readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody))
	readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody))
	tick <- time.Now()
	if doc := next(t, events); doc.Models[0].RequestsTotal != 2 {
		t.Fatalf("after two requests: requests_total %d", doc.Models[0].RequestsTotal)
	}
	// The client leaving ends its handler and frees its place.
	cancel()
	eventually(t, "watcher gone", func() bool { return rig.gw.streams.watchers() == 0 })
}

// At most maxStatusWatchers streams are open at once; one more is told
// so (503, OpenAI-shaped, Retry-After); CloseStreams ends them all and
// refuses new ones.
func TestStatusStreamBoundedAndClosedAtShutdown(t *testing.T) {
	be := newOKBackend(t)
	rig := newStreamRig(t, testConfig(be.URL))
	var all []<-chan statusDoc
	for i := 0; i < maxStatusWatchers; i++ {
		_, events := rig.watch(t, context.Background())
		<-rig.tickers
		next(t, events)
		all = append(all, events)
	}
	resp, _ := rig.watch(t, context.Background())
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("one watcher too many: %d %v", resp.StatusCode, resp.Header)
	}
	metrics := scrape(t, rig.admin.URL+"/metrics")
	for _, want := range []string{
		fmt.Sprintf("sluice_status_stream_watchers %d\n", maxStatusWatchers),
		fmt.Sprintf("sluice_status_stream_watchers_limit %d\n", maxStatusWatchers),
		"sluice_status_stream_refused_total 1\n",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	rig.gw.CloseStreams() // returns once every handler has
	if n := rig.gw.streams.watchers(); n != 0 {
		t.Fatalf("%d watchers left after CloseStreams", n)
	}
	for _, events := range all {
		for range events { // each stream ends
		}
	}
	if resp, _ := rig.watch(t, context.Background()); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after CloseStreams: %d, want 503", resp.StatusCode)
	}
	// Refused at shutdown is not refused at the bound.
	metrics = scrape(t, rig.admin.URL+"/metrics")
	if !strings.Contains(metrics, "sluice_status_stream_watchers 0\n") || !strings.Contains(metrics, "sluice_status_stream_refused_total 1\n") {
		t.Errorf("after CloseStreams: %s", grepLines(metrics, "sluice_status_stream"))
	}
}

// grepLines is the lines of text that start with prefix.
func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The job queue's backlog is shown once a reader is installed, read from
// the queue at most once a second however many read /status, and null
// while the queue does not answer.
func TestStatusJobQueueBacklog(t *testing.T) {
	be := newOKBackend(t)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	_, gw := startGatewayWith(t, testConfig(be.URL), func(d *Deps) { d.Now = now })
	admin := adminServer(t, gw)
	if doc := statusOf(t, admin.URL); doc.Jobs.Backlog != nil || doc.Jobs.ActiveBatches != nil {
		t.Fatalf("no queue: %+v", doc.Jobs)
	}
	var reads atomic.Int32
	failing := atomic.Bool{}
	gw.SetJobQueue(func(context.Context) (jobs.Backlog, error) {
		reads.Add(1)
		if failing.Load() {
			return jobs.Backlog{}, errors.New("nats away")
		}
		return jobs.Backlog{Jobs: 42, Batches: 3, StoreBytes: 1000, StoreLimitBytes: 4096}, nil
	})
	for i := 0; i < 5; i++ {
		doc := statusOf(t, admin.URL)
		if doc.Jobs.Backlog == nil || *doc.Jobs.Backlog != 42 || *doc.Jobs.ActiveBatches != 3 ||
			doc.Jobs.StoreBytes == nil || *doc.Jobs.StoreBytes != 1000 || *doc.Jobs.StoreLimitBytes != 4096 {
			t.Fatalf("backlog: %+v", doc.Jobs)
		}
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d queue reads for five /status within a second, want 1", n)
	}
	failing.Store(true)
	clock.Add(int64(time.Second))
	if doc := statusOf(t, admin.URL); doc.Jobs.Backlog != nil || reads.Load() != 2 {
		t.Fatalf("queue not answering: %+v after %d reads, want null", doc.Jobs, reads.Load())
	}
}
