package gateway

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
)

// A pool's reported ceiling is only a ceiling when every usable backend
// accounts for its slots. A backend that reports no batch bound (vLLM
// beside SGLang, a stale or never-read scrape) tells nothing of its room:
// the merged code counted only its in-flight requests, so an idle vLLM
// beside an SGLang engine with two free slots made a ceiling of 2 that
// replaced the memory of prompt starts and capped every probe: the ramp
// could never prove the vLLM backend's slots while the other reported.
// Such a pool now reports none (the memory and the probes, as before the
// bound). A backend that reports a bound but queues is full: it counts
// what it runs for this gateway.
func TestReportedCapacityNeedsEveryBackendsBound(t *testing.T) {
	at := time.Unix(1000, 0)
	now := func() time.Time { return at }
	mk := func(url string, l *endpoint.Load) *endpoint.Backend {
		b, err := endpoint.New(endpoint.Spec{URL: url}, endpoint.HealthPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		if l != nil {
			l.At, l.Expires = at, at.Add(3*time.Second)
			b.SetLoad(*l)
		}
		return b
	}
	pool := func(bs ...*endpoint.Backend) *Pool {
		return NewPool(PoolParts{Model: &config.Model{Name: "m1"}, Backends: bs, Now: now})
	}
	sglang := func() *endpoint.Load { return &endpoint.Load{Running: 14, BatchBound: 16} }
	cases := []struct {
		name string
		p    *Pool
		want int
	}{
		{"one reporting backend", pool(mk("http://x", sglang())), 2},
		{"two reporting backends", pool(mk("http://x", sglang()), mk("http://y", sglang())), 4},
		{"beside a backend reporting no bound", pool(mk("http://x", sglang()), mk("http://y", &endpoint.Load{Running: 0})), 0},
		{"beside a backend never scraped", pool(mk("http://x", sglang()), mk("http://y", nil)), 0},
		{"beside a backend whose bound is stale", pool(mk("http://x", sglang()), func() *endpoint.Backend {
			b := mk("http://y", nil)
			b.SetLoad(endpoint.Load{BatchBound: 16, At: at.Add(-time.Minute), Expires: at.Add(-time.Second)})
			return b
		}()), 0},
		{"beside a reporting backend that queues (full)", pool(mk("http://x", sglang()), mk("http://y", &endpoint.Load{Running: 16, Waiting: 3, BatchBound: 16})), 2},
	}
	for _, c := range cases {
		if got, ok := c.p.ReportedCapacity(0); got != c.want || ok != (c.want > 0) { // every 0 here is none reported
			t.Errorf("%s: reported capacity %d (reported %t), want %d", c.name, got, ok, c.want)
		}
	}
}
