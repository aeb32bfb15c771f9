package gateway

import (
	"context"
	"crypto/rand"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/redisconn"
)

// A Redis that comes back without what it held (restarted with no
// persistence, a new instance at the same address, FLUSHALL, restored
// from a snapshot older than the last writes, a failover to a replica
// that lagged) loses the owners this replica wrote before: without more,
// other replicas then miss those ids, and the pool's policy routes their
// continuations to a backend that may not hold them (a false 400
// previous_response_not_found). Held writes (respheld.go) do not cover
// it: they are the writes Redis refused, not the ones it took and lost.
//
// So each replica keeps a mark in Redis, a key of its own (the prefix,
// "live:", a random name made at start) holding a number it raises at
// every check, every sharedCheckEvery and as soon as a bypass ends: one
// SET ... GET, which writes the next number and returns the one Redis
// held. Redis holding no mark, or a number below the last one it
// acknowledged, has lost writes this replica made since then: the writer
// writes again every owner this replica's map still holds (relayed here
// or learned from Redis, within the TTL, each with the time left on it),
// on top of its held writes, a chunk at a time between fresh writes
// (startRewrite). A check whose reply was lost (timed out)
// may or may not have landed: any number from the last acknowledged on
// is Redis' own. A Redis that evicts keys under maxmemory is not seen by
// the mark unless it evicts the mark.
//
// The first check finding no mark is this replica's first: its map holds
// only what it made since it started, written again quietly (not counted
// as a loss). A Redis older than 6.2 (no SET ... GET) answers a syntax
// error: checks stop, as before this mark; another error reply (OOM) is
// Redis answering, the next check tries again.

// sharedCheckEvery spaces the mark's checks while Redis answers (on the
// wall clock, as the writer's retries: a test's frozen clock must not stop
// them): a replica that writes nothing still finds a lost Redis within it.
const sharedCheckEvery = time.Second

// sharedMark is the writer's state of its mark.
type sharedMark struct {
	key       string
	next      int64 // the number the next check writes
	confirmed int64 // the last number Redis acknowledged; 0: none yet
	owed      bool  // a rewrite Redis could not take in full: its failed keys written again at the next check
	// owedKeys are the keys of the rewrite's writes Redis could not take
	// (a Cluster master down): the next check writes again only these,
	// as the map holds them then. nil with owed: the whole map.
	owedKeys map[string]bool
	off      bool // Redis cannot check (an error reply to SET ... GET)
}

func newSharedMark(prefix string) sharedMark {
	return sharedMark{key: prefix + "live:" + rand.Text()[:16], next: 1}
}

// check raises the mark and, when Redis lost writes (or a rewrite is
// owed), writes again what this replica's map holds. Before a connection
// is made it is not sent. While Redis answers, its failure is not counted
// by the bypass (the lookups and writes judge Redis; a check is not one
// of the calls they wait for). While Redis is bypassed, the check is the
// bypass' probe once the back-off has passed: otherwise only a lookup or
// a write could end the bypass, and a replica with no such traffic (and
// no held writes, which the writer retries) never checked again. Its
// owed rewrite, and the owners a Redis that came back empty lost, waited
// for a request (TestIdleReplicaRewritesAfterABypass).
func (s *sharedOwners) check(ctx context.Context) {
	conn := s.conn.Loaded()
	if s.mark.off || conn == nil {
		return
	}
	var probe *redisconn.Call
	if s.bypass.Down() {
		call, _, ok := s.bypass.Admit(s.now(), conn.c, s.mark.key)
		if !ok {
			return
		}
		probe = &call
	}
	report := func(err error) { // the probe's outcome: Redis answered, or not
		switch {
		case probe == nil:
		case redisconn.IsOutage(err): // a nil reply (no mark) is Redis answering
			probe.Down(s.now(), err)
		default:
			probe.Up()
		}
	}
	cctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	seq := s.mark.next
	s.mark.next++
	c := conn.c
	b, err := c.Do(cctx, c.B().Set().Key(s.mark.key).Value(strconv.FormatInt(seq, 10)).Get().
		PxMilliseconds(s.ttl.Milliseconds()).Build()).ToString()
	cancel()
	report(err)
	first := s.mark.confirmed == 0
	lost := false
	switch {
	case rueidis.IsRedisNil(err):
		lost = true
	case redisconn.IsOutage(err): // the next check tries again
		return
	case err != nil: // an error reply: SET ... GET unknown (Redis before 6.2), or OOM
		if strings.Contains(err.Error(), "syntax error") {
			s.mark.off = true
			s.log.Warn("responses ids: redis cannot hold this replica's mark (SET ... GET, Redis 6.2); "+
				"a Redis that comes back empty is not noticed", "err", err)
		}
		return
	default:
		lost = markLost(b, s.mark.confirmed)
	}
	s.mark.confirmed = seq
	switch {
	case lost && !first:
		s.lost.Inc()
		s.startRewrite(true)
	case lost:
		s.startRewrite(false)
	case s.mark.owed:
		s.startOwedRewrite()
	}
}

// markLost reads the number Redis held for this replica's mark (the
// reply to SET ... GET): writes were lost when it is not a number, or one
// below the last Redis acknowledged (confirmed). A number from confirmed
// on is Redis' own, also one of a check whose reply was lost.
func markLost(held string, confirmed int64) bool {
	n, err := strconv.ParseInt(held, 10, 64)
	return err != nil || n < confirmed
}

// rewriting is a rewrite under way: the owners left to write again, and
// what its end is logged with. The writer's alone.
type rewriting struct {
	left    []sharedWrite
	all     int
	written int
	failed  map[string]bool // keys Redis could not take: owed to the next check
	loss    bool            // Redis was found to have lost them: logged when done
	owed    bool            // the rest of an earlier rewrite
}

// startRewrite begins writing again every owner this replica's map holds
// (a rewrite under way starts over: Redis lost them again). It is done a
// sharedBatch at a time by the writer (rewriteStep), each chunk after the
// fresh writes queued by then: a rewrite of 100k ids held every fresh
// write behind it for its whole length (measured: 577 ms), which other
// replicas then miss.
func (s *sharedOwners) startRewrite(loss bool) {
	ws := s.holdings()
	s.rw = rewriting{left: ws, all: len(ws), loss: loss}
	s.mark.owedKeys = nil
	if loss {
		s.log.Warn("responses ids: redis lost this replica's owner writes (restarted empty, flushed, or an older "+
			"snapshot or replica); writing again the ids this replica holds", "held_here", len(ws))
	}
	if len(ws) == 0 {
		s.mark.owed = false
	}
}

// startOwedRewrite writes again what the last rewrite could not, as the
// map holds it now (an id forgotten since is not written back): while a
// Cluster master is down, each check tries its keys (its bypass turns them
// away at once until its back-off has passed) without writing the whole
// map again to the live ones.
func (s *sharedOwners) startOwedRewrite() {
	if s.mark.owedKeys == nil {
		s.startRewrite(false)
		return
	}
	var ws []sharedWrite
	for _, w := range s.holdings() {
		if s.mark.owedKeys[w.key] {
			ws = append(ws, w)
		}
	}
	s.rw = rewriting{left: ws, all: len(ws), owed: true}
	if len(ws) == 0 {
		s.mark.owed, s.mark.owedKeys = false, nil
	}
}

// rewriteStep writes the next chunk of the rewrite under way. What Redis
// cannot take (a master down, or Redis away) is counted, by the rewrite
// that found Redis lost them (writes_total{result="rewrite_failed"}), and
// owed to the next check, and
// the rewrite goes on with the rest: a chunk that failed used to end it,
// so while one Cluster master was down the ids after its first chunk were
// never written to the live ones (the next check started over and stopped
// at the same chunk). Once a master is bypassed its chunks fail without a
// round trip, so going on costs the live masters' writes alone.
func (s *sharedOwners) rewriteStep(ctx context.Context) {
	n := min(len(s.rw.left), sharedBatch)
	if n == 0 {
		return
	}
	failed := s.write(ctx, s.rw.left[:n], s.rewritten)
	s.rw.written += n - len(failed)
	s.rw.left = s.rw.left[n:]
	if len(failed) > 0 {
		if !s.rw.owed { // counted once: not again at each check's retry while a master stays down
			s.rewriteFailed.Add(float64(len(failed)))
		}
		if s.rw.failed == nil {
			s.rw.failed = make(map[string]bool, len(failed))
		}
		for _, w := range failed {
			s.rw.failed[w.key] = true
		}
	}
	if len(s.rw.left) > 0 {
		return
	}
	switch {
	case len(s.rw.failed) > 0:
		if !s.rw.owed { // once per outage, not at each check's retry of what is owed
			s.log.Warn("responses ids: rewrite done but redis could not take some ids (a master or redis unavailable); "+
				"those are written again at the next check", "written", s.rw.written, "not_written", len(s.rw.failed),
				"held_here", s.rw.all)
		}
		s.mark.owed, s.mark.owedKeys = true, s.rw.failed
	default:
		if s.rw.loss || s.rw.owed {
			s.log.Info("responses ids: the ids this replica holds written again", "written", s.rw.written, "held_here", s.rw.all)
		}
		s.mark.owed, s.mark.owedKeys = false, nil
	}
	s.rw = rewriting{}
}
