package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil/promtest"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// TestContinuationOfALostIDIsLocated: A makes responses while the
// replicas' Redis is frozen (its owner writes held in its memory), then
// stops before Redis is back: the held writes are lost with it (counted
// shutdown). Redis back, B knows none of those ids and Redis misses them;
// each continuation through B asks the pool's backends which holds its
// previous response and lands there. Before, the pool's policy picked the
// backend, and round robin sent one of each same-owner pair to the
// simulator that does not hold it: a 400 previous_response_not_found for a
// response that exists.
func TestContinuationOfALostIDIsLocated(t *testing.T) {
	rd := redistest.Start(t)
	p := startReplicaPair(t, rd.Addr, hangGuard, nil)
	p.connected(t)
	create := func() string { t.Helper(); return p.createThroughA(t) }
	create()
	p.written(t, 1)

	p.freeze(rd)
	t.Cleanup(rd.Resume)                  // before the server's own cleanup stops it
	p.frozen.Store(time.Now().UnixNano()) // no probe of A's bypass meets the frozen Redis
	create()
	create()
	waitFor(t, func() bool { return promtest.Value(t, p.regA, "sluice_responses_ids_redis_degraded", "") == 1 })
	const made = 4
	var ids []string
	for range made {
		ids = append(ids, create())
	}
	waitFor(t, func() bool {
		return promtest.Value(t, p.regA, "sluice_responses_ids_redis_held", "") == made+sharedBypassAfter
	})
	p.gws[0].Close() // A stops with Redis still away: what it held is lost
	if n := promtest.Value(t, p.regA, "sluice_responses_ids_redis_held_dropped_total", "shutdown"); n != made+sharedBypassAfter {
		t.Fatalf("A's held writes lost at shutdown counted %v, want %d", n, made+sharedBypassAfter)
	}

	p.thaw(rd)
	p.skew.Add(int64(time.Minute))
	p.frozen.Store(0)
	for _, id := range []string{ids[0], ids[2], ids[1], ids[3]} {
		if code, got := p.continueThroughB(t, id); code != 200 {
			t.Fatalf("continuing %s through B, its owner lost with A: %d %s", id, code, got)
		}
	}
	if n := promtest.Value(t, p.regB, "sluice_responses_ids_redis_lookups_total", "miss"); n != made {
		t.Fatalf("B's Redis misses %v, want %d: A's held writes were lost", n, made)
	}
	if n := promtest.Value(t, p.regB, "sluice_responses_followup_probes_total", "answered"); n != made {
		t.Fatalf("B's probes that found the response: %v, want %d", n, made)
	}
	// Found once, remembered: a follow-up through B goes straight there.
	resp := do(t, http.MethodGet, p.b.URL+"/v1/responses/"+ids[0], "")
	if got := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(got, ids[0]) {
		t.Fatalf("GET %s through B: %d %s", ids[0], resp.StatusCode, got)
	}
	if n := promtest.Value(t, p.regB, "sluice_responses_followups_total", "known"); n != 1 {
		t.Fatalf("B's follow-ups found in its map %v, want 1", n)
	}
}
