package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-gw/sluice/internal/testutil/promtest"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// TestResponsesIDsReplayedAfterBypass: responses made through A while the
// replicas' Redis is frozen (SIGSTOP) are continued through B once Redis
// is back: A held their owner writes (its own GETs answered from its map
// meanwhile) and replayed them when its probe found Redis back, so B finds
// each in Redis and the continuation lands on its owner. Before, A's
// writes were skipped while bypassed: after Redis returned B missed them
// (only a write sent before the freeze, executed at SIGCONT, could land)
// and the pool's policy picked the backend, one that may not hold the
// response (400 previous_response_not_found from it).
func TestResponsesIDsReplayedAfterBypass(t *testing.T) {
	rd := redistest.Start(t)
	p := startReplicaPair(t, rd.Addr, hangGuard, nil)
	p.connected(t)
	create := func() string { t.Helper(); return p.createThroughA(t) }
	create()
	p.written(t, 1)
	writes := func(reg *prometheus.Registry, result string) float64 {
		return promtest.Value(t, reg, "sluice_responses_ids_redis_writes_total", result)
	}

	p.freeze(rd)
	t.Cleanup(rd.Resume) // before the server's own cleanup stops it
	// The clock stands still while Redis is frozen: A's back-off never
	// passes, so no probe meets the frozen Redis however slow the machine.
	p.frozen.Store(time.Now().UnixNano())
	// Two writes time out (sharedBypassAfter): Redis is bypassed. They
	// were sent before the freeze was known and may land at SIGCONT; the
	// responses made after are the ones a bypass used to lose.
	create()
	create()
	waitFor(t, func() bool { return promtest.Value(t, p.regA, "sluice_responses_ids_redis_degraded", "") == 1 })
	const made = 4
	var ids []string
	for range made {
		ids = append(ids, create())
	}
	// Every write is held, none lost.
	waitFor(t, func() bool {
		return promtest.Value(t, p.regA, "sluice_responses_ids_redis_held", "") == made+sharedBypassAfter
	})
	// A answers its own ids from its map meanwhile.
	for _, id := range ids[:2] {
		if resp := do(t, http.MethodGet, p.a.URL+"/v1/responses/"+id, ""); readAll(t, resp) == "" || resp.StatusCode != 200 {
			t.Fatalf("GET %s through A with Redis frozen: %d", id, resp.StatusCode)
		}
	}

	p.thaw(rd)
	p.skew.Add(int64(time.Minute)) // past the back-off, and running again
	p.frozen.Store(0)
	// Both at once: the writer counts a replayed write as Redis acks it,
	// and lets it go from what it holds only after the batch (a loaded
	// machine can preempt it between the two).
	waitFor(t, func() bool {
		return writes(p.regA, "replayed") == made+sharedBypassAfter &&
			promtest.Value(t, p.regA, "sluice_responses_ids_redis_held", "") == 0
	})
	if n := idKeys(t, rd); n != made+sharedBypassAfter+1 {
		t.Fatalf("Redis holds %d ids, want %d", n, made+sharedBypassAfter+1)
	}
	if ttl, err := rd.Do("PTTL", p.gws[0].owners.shared.key(ids[0])); err != nil || ttl == "-1" || ttl == "-2" {
		t.Fatalf("a replayed key's PTTL %s (%v): no expiry", ttl, err)
	}

	// Round robin made ids[0] and ids[2] on one simulator, ids[1] and
	// ids[3] on the other: continued in that order, a pool's policy that
	// alternates (round robin, through B) would send one of each pair to
	// the simulator that does not hold it, whatever simulator it starts at.
	for _, id := range []string{ids[0], ids[2], ids[1], ids[3]} {
		if code, got := p.continueThroughB(t, id); code != 200 {
			t.Fatalf("continuing %s through B after Redis returned: %d %s", id, code, got)
		}
	}
	if n := promtest.Value(t, p.regB, "sluice_responses_ids_redis_lookups_total", "hit"); n != made {
		t.Fatalf("B's Redis hits %v, want %d: the ids made during the outage are in Redis", n, made)
	}
	if n := writes(p.regA, "error") + promtest.Value(t, p.regA, "sluice_responses_ids_redis_held_dropped_total", "bound"); n != 0 {
		t.Fatalf("A lost %v writes", n)
	}
}

// TestHeldWritesBoundExpiryAndOrder: held writes are taken oldest first,
// each master's apart; a newer write to a key replaces the held one;
// beyond the bound the oldest of all are dropped, and those past the TTL
// when taken (both counted); what failed stays first, and moves to the
// master serving its key now when that changed.
func TestHeldWritesBoundExpiryAndOrder(t *testing.T) {
	bound := prometheus.NewCounter(prometheus.CounterOpts{Name: "bound"})
	expired := prometheus.NewCounter(prometheus.CounterOpts{Name: "expired"})
	h := newHeldWrites(3, time.Hour, bound, expired)
	t0 := time.Unix(1000, 0)
	w := func(key string, at time.Duration) sharedWrite { return sharedWrite{key: key, at: t0.Add(at)} }
	keys := func(hws []*heldWrite) (k string) {
		for _, hw := range hws {
			k += hw.w.key
		}
		return k
	}
	same := func(key string) string { return "m1" }

	h.hold(w("a", 0), "m1")
	h.hold(w("b", time.Minute), "m2")
	h.hold(sharedWrite{key: "a", del: true, at: t0.Add(2 * time.Minute)}, "m1") // the DELETE after the create: replaces it
	h.hold(w("c", 3*time.Minute), "m1")
	if h.len() != 3 || testutil.ToFloat64(bound) != 0 {
		t.Fatalf("held %d, dropped %v; want 3 (a replaced), 0", h.len(), testutil.ToFloat64(bound))
	}
	h.hold(w("d", 4*time.Minute), "m1") // beyond the bound: b, the oldest of all (m2's), goes
	if testutil.ToFloat64(bound) != 1 || h.n.Load() != 3 || len(h.nodes()) != 1 {
		t.Fatalf("dropped %v, gauge %d, masters %v; want 1, 3, [m1]", testutil.ToFloat64(bound), h.n.Load(), h.nodes())
	}
	got := h.oldest(t0.Add(time.Hour), "m1", 2)
	if keys(got) != "ac" || !got[0].w.del {
		t.Fatalf("took %q (del %v), want a's DELETE then c", keys(got), got[0].w.del)
	}
	h.settle(got, map[string]bool{"a": true, "c": true}, same) // both failed: held, first
	// An hour and two minutes after t0: a's DELETE (made at 2m) is past
	// the TTL, c (3m) and d (4m) are not.
	got = h.oldest(t0.Add(time.Hour+2*time.Minute), "m1", 10)
	if keys(got) != "cd" || testutil.ToFloat64(expired) != 1 {
		t.Fatalf("took %q, expired %v; want cd, 1", keys(got), testutil.ToFloat64(expired))
	}
	// c failed and its key is m3's now (a failover): it moves there; d
	// was written.
	h.settle(got, map[string]bool{"c": true}, func(string) string { return "m3" })
	if h.len() != 1 || len(h.oldest(t0, "m1", 10)) != 0 || keys(h.oldest(t0, "m3", 10)) != "c" {
		t.Fatalf("held %d, m1 %q, m3 %q; want c alone, on m3", h.len(), keys(h.oldest(t0, "m1", 10)), keys(h.oldest(t0, "m3", 10)))
	}
	h.forget("c")
	if h.len() != 0 || h.n.Load() != 0 || len(h.nodes()) != 0 {
		t.Fatalf("%d left, gauge %d, masters %v", h.len(), h.n.Load(), h.nodes())
	}
}
