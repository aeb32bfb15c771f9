package gateway

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/testutil/promtest"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// idKeys counts the owner keys Redis holds under the default prefix (a
// hash of 32 hex digits), not the replicas' marks.
func idKeys(t *testing.T, rd *redistest.Server) int {
	t.Helper()
	keys, err := rd.Do("KEYS", defaultSharedPrefix+strings.Repeat("?", 32))
	if err != nil {
		t.Fatal(err)
	}
	if keys == "" {
		return 0
	}
	return strings.Count(keys, "\n") + 1
}

// TestResponsesIDsRewrittenWhenRedisComesBackEmpty: responses made through
// A are continued through B after the replicas' Redis was replaced by an
// empty one at the same address (restarted without persistence): A
// notices its mark is gone and writes again the owners its map holds, so
// B finds each in Redis and the continuation lands on its owner. Before,
// nothing was written again: B missed every id and the pool's policy
// picked the backend, one that may not hold the response (400
// previous_response_not_found from it).
func TestResponsesIDsRewrittenWhenRedisComesBackEmpty(t *testing.T) {
	rd := redistest.Start(t)
	p := startReplicaPair(t, rd.Addr, hangGuard, nil)
	p.connected(t)
	const made = 4
	var ids []string
	for range made { // round robin: two on each simulator
		ids = append(ids, p.createThroughA(t))
	}
	p.written(t, made)

	rd.Stop()
	rd.Restart() // empty: no persistence
	// A's next check (within sharedCheckEvery, on the wall clock) finds
	// its mark gone: it may already have written the ids again by the
	// time the test could look for an empty Redis, so the test does not
	// (it did, and a loaded machine let the check come first: "the new
	// Redis holds 4 ids"); the loss counted once and the rewrites say
	// where the ids came from. The rewrites are counted once Redis took
	// them: waited for by the count, which comes after the keys (a wait
	// on the keys could read it before).
	waitFor(t, func() bool {
		return promtest.Value(t, p.regA, "sluice_responses_ids_redis_writes_total", "rewritten") >= made
	})
	// At least made, not exactly (seen: 5 for 4): a rewrite Redis did not
	// take in full (its connection cut by the restart) is owed, and done
	// again in full at the next check.
	if n := idKeys(t, rd); n != made {
		t.Fatalf("Redis holds %d ids after A's rewrite, want %d", n, made)
	}
	if n := promtest.Value(t, p.regA, "sluice_responses_ids_redis_lost_total", ""); n != 1 {
		t.Fatalf("A found Redis lost its writes %v times, want 1", n)
	}
	if ttl, err := rd.Do("PTTL", p.gws[0].owners.shared.key(ids[0])); err != nil || ttl == "-1" || ttl == "-2" {
		t.Fatalf("a rewritten key's PTTL %s (%v): no expiry", ttl, err)
	}

	// In same-owner pairs: an alternating policy through B would send one
	// of each pair to the simulator that does not hold it.
	for _, id := range []string{ids[0], ids[2], ids[1], ids[3]} {
		resp := post(t, p.b.URL+"/v1/responses", `{"model":"m1","input":"and then?","max_output_tokens":2,"previous_response_id":"`+id+`"}`)
		if got := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("continuing %s through B after Redis came back empty: %d %s", id, resp.StatusCode, got)
		}
	}
	if n := promtest.Value(t, p.regB, "sluice_responses_ids_redis_lookups_total", "hit"); n != made {
		t.Fatalf("B's Redis hits %v, want %d", n, made)
	}
	// B's mark was gone too; its map held only its continuations' ids,
	// made after: nothing of A's is B's to write. B writes its own on its
	// writer's goroutine, after the answers: counted once Redis took them,
	// at once (ok) or, a write that failed under load, held and replayed.
	waitFor(t, func() bool { return writtenTo(t, p.regB) >= made })
	if n := strconv.Itoa(idKeys(t, rd)); n != strconv.Itoa(2*made) {
		t.Fatalf("Redis holds %s ids, want %d: A's and B's continuations", n, 2*made)
	}
}

// TestHeldWritesAtShutdownAreCounted: writes still held when the writer
// stops (Redis away) are lost with the process, and said so: counted
// held_dropped_total{reason="shutdown"}. Before, they went uncounted.
func TestHeldWritesAtShutdownAreCounted(t *testing.T) {
	rd := redistest.Start(t)
	reg := prometheus.NewRegistry()
	now := time.Now()
	opt := &ResponseIDsRedis{Client: frozenClockRedis(rd.Addr), Timeout: hangGuard}
	o := newRespOwners(reg, nil, 100, time.Hour, func() time.Time { return now }, opt)
	defer o.close()
	waitFor(t, func() bool { return o.shared.conn.Loaded() != nil })
	rd.Stop()
	o.remember("resp_1", respOwner{backend: "s1"})
	o.remember("resp_2", respOwner{backend: "s1"})
	waitFor(t, func() bool { return promtest.Value(t, reg, "sluice_responses_ids_redis_held", "") == 2 })
	o.close()
	if n := promtest.Value(t, reg, "sluice_responses_ids_redis_held_dropped_total", "shutdown"); n != 2 {
		t.Fatalf("held writes lost at shutdown counted %v, want 2", n)
	}
}

// TestFreshWriteNotHeldBehindRewrite: while the writer writes again the
// ids this replica holds (Redis lost them), a fresh owner write lands
// before the rewrite ends: the rewrite goes a chunk at a time, each after
// the fresh writes queued by then. Before, the rewrite ran to its end
// first (a 100k rewrite held every fresh write for its whole length:
// 577 ms measured, BenchmarkFreshWriteDuringRewrite), and another replica
// missed the fresh id meanwhile.
//
// The order is Redis' own (setOrder). Before, the test read the rewrite's
// counter once the fresh key was seen: on a loaded machine the writer
// could end the rewrite before the test read it (a false failure), or
// before the test even queued the fresh write. A round in which the
// fresh write was queued too late to land mid-rewrite says nothing and
// is done again.
func TestFreshWriteNotHeldBehindRewrite(t *testing.T) {
	const held = 20_000
	rd := redistest.Start(t)
	sets := setOrder(t, rd)
	opt := &ResponseIDsRedis{Client: redisconn.Option(config.Redis{Addrs: []string{rd.Addr}}), Timeout: hangGuard}
	reg := prometheus.NewRegistry()
	o := newRespOwners(reg, nil, held+100, time.Hour, time.Now, opt)
	defer o.close()
	// The writer's first check, at its start, leaves its mark (the map
	// still empty) and the next raises it: waited for, so that the first
	// check's quiet rewrite is over and the FLUSHALL below is a loss.
	waitFor(t, func() bool {
		k, _ := rd.Do("KEYS", defaultSharedPrefix+"live:*")
		v, _ := rd.Do("GET", k)
		n, _ := strconv.Atoi(v)
		return n >= 2
	})
	for i := range held {
		o.c.set("resp_held_"+strconv.Itoa(i), respOwner{backend: "b1", at: time.Now()})
	}
	rewritten := func() float64 { return promtest.Value(t, reg, "sluice_responses_ids_redis_writes_total", "rewritten") }
	round := 0
	for ; ; round++ {
		all := held + round // the fresh ids of the rounds before are in the map too
		from, seen := rewritten(), len(sets.keys())
		if _, err := rd.Do("FLUSHALL"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return rewritten() > from })
		fresh := "resp_fresh_" + strconv.Itoa(round)
		o.remember(fresh, respOwner{backend: "b2"})
		// remember queued it before returning; the counter counts what
		// landed: two chunks or more were still to be written.
		early := rewritten()-from < float64(all-2*sharedBatch)
		waitFor(t, func() bool { return rewritten()-from >= float64(all) && len(sets.keys()) >= seen+all+1 })
		after := 0 // the rewrite's writes Redis took after the fresh one
		freshKey := o.shared.key(fresh)
		for i, k := range sets.keys()[seen:] {
			if k == freshKey {
				after = len(sets.keys()[seen:]) - i - 1
			}
		}
		if early && after == 0 {
			t.Fatalf("round %d: the fresh write landed after the whole rewrite of %d", round, all)
		}
		if early {
			break
		}
		if round == 4 {
			t.Fatalf("in %d rounds the fresh write was never queued before the rewrite's last chunks", round+1)
		}
	}
	if n := idKeys(t, rd); n != held+round+1 {
		t.Fatalf("Redis holds %d ids after the rewrite, want %d (rewritten %v, lost %v, ok %v)", n, held+round+1, rewritten(), promtest.Value(t, reg, "sluice_responses_ids_redis_lost_total", ""), promtest.Value(t, reg, "sluice_responses_ids_redis_writes_total", "ok"))
	}
}

// setKeys is the owner keys Redis set, in the order it set them.
type setKeys struct {
	mu   sync.Mutex
	list []string
}

func (s *setKeys) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.list
}

// setOrder subscribes to Redis' keyspace notifications of SETs of owner
// keys (not the marks): each arrives in the order Redis executed it, and
// the subscription buffers what the test has not taken yet, so a test the
// machine holds back loses no order.
func setOrder(t *testing.T, rd *redistest.Server) *setKeys {
	t.Helper()
	if _, err := rd.Do("CONFIG", "SET", "notify-keyspace-events", "K$"); err != nil {
		t.Fatal(err)
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{rd.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; c.Close() })
	s := &setKeys{}
	const space = "__keyspace@0__:"
	go func() {
		defer close(done)
		_ = c.Receive(ctx, c.B().Psubscribe().Pattern(space+defaultSharedPrefix+"*").Build(), func(m rueidis.PubSubMessage) {
			if k := strings.TrimPrefix(m.Channel, space); m.Message == "set" && !strings.Contains(k, "live:") {
				s.mu.Lock()
				s.list = append(s.list, k)
				s.mu.Unlock()
			}
		})
	}()
	waitFor(t, func() bool { n, _ := rd.Do("PUBSUB", "NUMPAT"); return strings.TrimPrefix(n, ":") == "1" })
	return s
}

// TestIdleReplicaRewritesAfterABypass: lookups that failed (Redis away or
// slow) took Redis down, bypassed; Redis is then found empty, and no
// request comes. The writer's mark check probes the bypassed Redis once
// the back-off has passed, ends the bypass and writes again the owners
// this replica holds. Before, the check skipped a bypassed Redis and only
// a lookup or a write could end the bypass: with none (and no held
// writes), it never ended, nothing was written again, and other replicas
// missed every id this one held (a wait for the rewrite timed out).
func TestIdleReplicaRewritesAfterABypass(t *testing.T) {
	rd := redistest.Start(t)
	reg := prometheus.NewRegistry()
	opt := &ResponseIDsRedis{Client: frozenClockRedis(rd.Addr), Timeout: hangGuard}
	o := newRespOwners(reg, nil, 100, time.Hour, time.Now, opt)
	defer o.close()
	const made = 3
	for i := range made {
		o.remember("resp_idle_"+strconv.Itoa(i), respOwner{backend: "b1"})
	}
	waitFor(t, func() bool { return writtenTo(t, reg) >= made })
	// The first check's rewrite is quiet (its mark was not there yet):
	// waited past, so that the FLUSHALL below is a loss.
	waitFor(t, func() bool {
		k, _ := rd.Do("KEYS", defaultSharedPrefix+"live:*")
		v, _ := rd.Do("GET", k)
		n, _ := strconv.Atoi(v)
		return n >= 2
	})
	// Two lookups that failed, as while Redis was away: bypassed.
	for range sharedBypassAfter {
		call, _, ok := o.shared.bypass.Admit(time.Now(), nil)
		if !ok {
			t.Fatal("a lookup was not admitted before the bypass")
		}
		call.Down(time.Now(), redisconn.ErrUnavailable)
	}
	if !o.shared.bypass.Down() {
		t.Fatal("Redis not bypassed after failed lookups")
	}
	// The first check's quiet rewrite counts too (the ids may be in the
	// map by then): only what comes after the loss is this rewrite.
	rewritten := func() float64 { return promtest.Value(t, reg, "sluice_responses_ids_redis_writes_total", "rewritten") }
	before := rewritten()
	if _, err := rd.Do("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return rewritten() >= before+made })
	if n := promtest.Value(t, reg, "sluice_responses_ids_redis_lost_total", ""); n != 1 {
		t.Fatalf("the loss counted %v times, want 1", n)
	}
	if o.shared.bypass.Down() {
		t.Fatal("Redis still bypassed after the rewrite")
	}
	if n := idKeys(t, rd); n != made {
		t.Fatalf("Redis holds %d ids after the rewrite, want %d", n, made)
	}
}
