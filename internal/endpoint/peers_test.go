package endpoint

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
)

// TestPeerLimitBoundsOnlyUnknownAdaptiveLimits: the median limit per unit
// of weight bounds a backend at half again as much while its batch size is
// unknown and its limit adaptive; a configured max_concurrency, a backend
// whose slots were learned, and a weighted backend's share are left alone,
// and a pool with an unlimited backend has no reference at all.
func TestPeerLimitBoundsOnlyUnknownAdaptiveLimits(t *testing.T) {
	clk := &fakeClock{t: t0}
	mkLim := func(url string, weight, limit int) *Backend {
		b := mustNew(t, Spec{URL: url, Weight: weight}, HealthPolicy{})
		b.SetLimiter(admission.Static(limit))
		return b
	}
	grown, a, c := mkLim("http://a:1", 1, 18), mkLim("http://b:1", 1, 7), mkLim("http://c:1", 1, 7)
	pool := []*Backend{grown, a, c}
	peer := PeerLimit(pool, clk.t)
	if peer != 7 {
		t.Fatalf("PeerLimit = %v, want the median 7", peer)
	}
	if got := grown.LimitAmong(peer); got != 10 {
		t.Fatalf("grown backend's limit among peers = %d, want 10 (1.5 x 7)", got)
	}
	hold(grown, 10)
	if grown.HasCapacityAmong(peer) || !grown.HasCapacity() {
		t.Fatal("10 in flight: room under its own 18, none among its peers")
	}
	if got := a.LimitAmong(peer); got != 7 {
		t.Fatalf("a peer at the median is bounded to %d, want its own 7", got)
	}

	// Twice the weight: twice the share.
	heavy := mkLim("http://d:1", 2, 30)
	if got := heavy.LimitAmong(PeerLimit([]*Backend{heavy, a, c}, clk.t)); got != 21 {
		t.Fatalf("weight-2 backend among limit-7 peers: %d, want 21", got)
	}

	// Slots learned from its own metrics: its scraped cap rules.
	b := mkLim("http://e:1", 1, 18)
	b.ObserveLoad(reading(clk, 16, 2, 16), clk.now)
	clk.t = clk.t.Add(time.Second)
	b.ObserveLoad(reading(clk, 16, 2, 16), clk.now)
	if _, slots := b.ScrapedCap(); slots != 16 {
		t.Fatalf("setup: slots %d, want 16", slots)
	}
	if got := b.LimitAmong(7); got != b.Limit() {
		t.Fatalf("backend with known slots bounded to %d, want its own limit %d", got, b.Limit())
	}

	// The operator's max_concurrency is not second-guessed.
	static := mustNew(t, Spec{URL: "http://f:1", MaxConcurrency: 40}, HealthPolicy{})
	if got := static.LimitAmong(7); got != 40 {
		t.Fatalf("max_concurrency 40 bounded to %d", got)
	}

	// An unlimited backend in the pool: no reference.
	free := mustNew(t, Spec{URL: "http://g:1"}, HealthPolicy{})
	if got := PeerLimit([]*Backend{grown, a, free}, clk.t); got != 0 {
		t.Fatalf("PeerLimit with an unlimited backend = %v, want 0", got)
	}
	if got := PeerLimit([]*Backend{grown}, clk.t); got != 0 {
		t.Fatalf("PeerLimit of one backend = %v, want 0", got)
	}
}
