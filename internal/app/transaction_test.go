package app

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/breaker"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/rate"
	"github.com/sluice-gw/sluice/internal/routing"
)

// liveState is what a reload may change on the running runtime: the
// runtime itself, each backend's breaker (and its state), adaptive limit
// and passive-health policy, each queue's pool, the rate limiter, and every
// metric.
type liveState struct {
	rt        *gateway.Runtime
	breakers  []*breaker.Breaker
	states    []breaker.State
	limiters  []admission.Limiter
	health    []endpoint.HealthPolicy
	queuePool map[string]*gateway.Pool
	limits    *limits
	metrics   string
}

func captureLive(t *testing.T, gw *gateway.Gateway, running *Built, reg *prometheus.Registry, now time.Time) liveState {
	t.Helper()
	rt := gw.Runtime()
	s := liveState{rt: rt, queuePool: map[string]*gateway.Pool{}, limits: running.limits}
	for _, b := range rt.Backends() {
		br := b.Breaker()
		s.breakers = append(s.breakers, br)
		s.states = append(s.states, br.State(now))
		s.limiters = append(s.limiters, b.Limiter())
		s.health = append(s.health, b.HealthPolicy())
	}
	for name, q := range running.queues {
		s.queuePool[name] = q.pool.Load()
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, mf := range mfs {
		sb.WriteString(mf.String())
		sb.WriteByte('\n')
	}
	s.metrics = sb.String()
	return s
}

// diff names what differs between two captures ("" when nothing does).
func (s liveState) diff(o liveState) string {
	var d []string
	if s.rt != o.rt {
		d = append(d, "runtime")
	}
	for i := range s.breakers {
		if s.breakers[i] != o.breakers[i] || s.states[i] != o.states[i] {
			d = append(d, "breaker "+strconv.Itoa(i))
		}
		if s.limiters[i] != o.limiters[i] {
			d = append(d, "adaptive limit "+strconv.Itoa(i))
		}
		if s.health[i] != o.health[i] {
			d = append(d, "health policy "+strconv.Itoa(i))
		}
	}
	for name, p := range s.queuePool {
		if o.queuePool[name] != p {
			d = append(d, "queue "+name)
		}
	}
	if s.limits != o.limits {
		d = append(d, "rate limiter")
	}
	if s.metrics != o.metrics {
		d = append(d, "metrics")
	}
	return strings.Join(d, ", ")
}

// reloadConfigs returns a running config of two models and a next one that
// changes, on shared parts, everything a build hands over: m1's objective
// (new adaptive limits and a new queue), the breaker settings (new
// breakers), the passive health policy and the rate limits (a new
// limiter); m2 keeps its queue, which must then measure m2's new pool.
func reloadConfigs(t *testing.T, url string) (running, next *config.Config) {
	c := config.Default()
	running = &c
	running.Log.Access = false
	for _, name := range []string{"m1", "m2"} {
		running.Models = append(running.Models, config.Model{Name: name, Policy: "round_robin", Backends: []config.Backend{{URL: url}}})
	}
	running.RateLimits.Global = config.RateRule{Requests: limitPtr(t, "rate=1r/m burst=50 nodelay")}
	n := *running
	n.Models = []config.Model{running.Models[0], running.Models[1]}
	n.Models[0].MaxWait = config.Duration(3 * time.Second)
	n.Breaker.Window = config.Duration(45 * time.Second)
	n.Health.MaxFails = 5
	n.RateLimits.Global = config.RateRule{Requests: limitPtr(t, "rate=1r/m burst=40 nodelay")}
	return running, &n
}

// limitPtr parses an nginx-syntax limit for a test config.
func limitPtr(t *testing.T, s string) *rate.Limit {
	l, err := rate.ParseNginx(s)
	if err != nil {
		t.Fatal(err)
	}
	return &l
}

// TestFailedReloadChangesNothing fails the build of a reload at each of its
// stages in turn: the running runtime, its breakers, adaptive limits,
// queues, passive-health policies, rate limiter (buckets included) and
// every metric are as they were, and the next request is served by the
// old runtime.
func TestFailedReloadChangesNothing(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`)
	}))
	t.Cleanup(be.Close)
	running, next := reloadConfigs(t, be.URL)
	reg := prometheus.NewRegistry()
	// A frozen clock: latency averages and limiter buckets do not move
	// between two captures on their own.
	frozen := time.Unix(1_800_000_000, 0)
	deps := Deps{Registry: reg, Transport: proxy.NewTransportCache(), Rand: routing.NewRand(1), Now: func() time.Time { return frozen }}
	cur, err := Build(running, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	cur.Commit()
	gw := gateway.New(cur.Runtime, gateway.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg, Now: deps.Now})
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); deps.Transport.CloseIdle(); cur.Retire(nil) })
	sent := 0
	send := func() string {
		t.Helper()
		sent++
		resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m1","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		// The request is recorded just after its answer is sent.
		eventually(t, "the request recorded", func() bool { return requestsRecorded(t, reg) == sent })
		return resp.Header.Get("X-Ratelimit-Remaining-Requests")
	}
	remaining := send()
	injected := errors.New("injected")
	for _, stage := range BuildStages {
		before := captureLive(t, gw, cur, reg, frozen)
		d := deps
		d.FailAt = func(s string) error {
			if s == stage {
				return injected
			}
			return nil
		}
		if b, err := Build(next, d, cur); !errors.Is(err, injected) || b != nil {
			t.Fatalf("stage %s: build returned %v, %v; want the injected failure", stage, b, err)
		}
		if diff := before.diff(captureLive(t, gw, cur, reg, frozen)); diff != "" {
			t.Errorf("a build failed at %s changed the running state: %s", stage, diff)
		}
		// The old limiter's bucket goes on from where it was.
		n, _ := strconv.Atoi(remaining)
		if remaining = send(); remaining != strconv.Itoa(n-1) {
			t.Errorf("after a build failed at %s: remaining %s, want %d (buckets reset?)", stage, remaining, n-1)
		}
	}

	// The same build without a failure does change all of it, on Commit
	// and Swap and not before: the comparison above can see each change.
	before := captureLive(t, gw, cur, reg, frozen)
	nb, err := Build(next, deps, cur)
	if err != nil {
		t.Fatal(err)
	}
	if diff := before.diff(captureLive(t, gw, cur, reg, frozen)); diff != "" {
		t.Fatalf("a build not yet committed changed the running state: %s", diff)
	}
	nb.Commit()
	gw.Swap(nb.Runtime)
	prev := cur
	cur = nb
	prev.Retire(nb)
	after := captureLive(t, gw, cur, reg, frozen)
	for _, want := range []string{"runtime", "breaker 0", "breaker 1", "adaptive limit 0", "health policy 0", "health policy 1", "queue m1", "queue m2", "rate limiter"} {
		if !strings.Contains(before.diff(after)+",", want+",") {
			t.Errorf("a successful reload did not change %s (diff: %s)", want, before.diff(after))
		}
	}
	if after.queuePool["m2"] != nb.Runtime.Pools["m2"] || prev.queues["m2"] != nb.queues["m2"] {
		t.Error("m2's queue was not handed over to the new runtime's pool")
	}
	if after.limiters[1] != before.limiters[1] {
		t.Error("m2's adaptive limit (unchanged settings) was not kept")
	}
	if before.rt.Pools["m2"].Backends[0] != nb.Runtime.Pools["m2"].Backends[0] {
		// An unset weight once kept every backend from being reused.
		t.Error("m2's backend (unchanged spec, weight unset) was not reused")
	}
	// The new limiter (burst 40: 41 at once) carries the old one's bucket
	// over: every request sent so far is still counted.
	if remaining = send(); remaining != strconv.Itoa(41-sent) {
		t.Errorf("new limiter: remaining %s, want %d (41 less the %d sent: the buckets carry over)", remaining, 41-sent, sent)
	}
}

// requestsRecorded sums sluice_requests_total.
func requestsRecorded(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "sluice_requests_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int(n)
}
