package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/redisconn"
)

// ResponseIDsRedis is where replicas share the response owner map
// (Options.ResponseIDsRedis): the deployment's Redis, chosen by
// internal/app.
type ResponseIDsRedis struct {
	Client rueidis.ClientOption
	// Clients, when set, shares the client with the process' other users
	// of the same Redis (the rate limits' store, the cache's second level).
	Clients *redisconn.Clients
	// Prefix starts every key; "" is "sluice:resp:".
	Prefix string
	// Timeout bounds one lookup, and one batch of writes; 0 is 100ms.
	Timeout time.Duration
	// MaxHeld bounds the writes held while Redis is bypassed, to be
	// replayed when it is back; 0 is sharedHeld, or the map's bound when
	// smaller.
	MaxHeld int
}

// Bounds of the shared owner map's Redis side.
const (
	defaultSharedPrefix  = "sluice:resp:"
	defaultSharedTimeout = 100 * time.Millisecond
	// sharedQueue bounds the writes waiting for the writer: beyond it a
	// write is dropped (counted), and that id is found as before (probing).
	sharedQueue = 4096
	// sharedBatch bounds the writes pipelined in one round trip.
	sharedBatch = 64
	// sharedRedial spaces dials while Redis is unreachable, and bounds
	// the wait before the writer retries the writes it holds.
	sharedRedial = time.Second
	// sharedHeld bounds the writes held while Redis is bypassed (about
	// 300 bytes each with the list and map: 5 MB at most): 160 s of an
	// outage at 100 responses a second on one replica. Beyond it the
	// oldest are dropped (counted): a continuation follows its response
	// soon, so the newest are the ones worth keeping.
	sharedHeld = 16384
	// heldRetryMin is the shortest wait before the writer retries its
	// held writes (while another caller's probe is under way).
	heldRetryMin = 50 * time.Millisecond
	// maxSharedValue bounds a value read back: ours are a backend name,
	// a tenant and a time.
	maxSharedValue = 4 << 10
	// sharedBypassAfter is how many calls in a row must fail before Redis
	// is bypassed (redisconn.Bypass), as for the rate limits' store: a
	// lookup that fails refuses its request (errIDsUnavailable), so one
	// late reply must not refuse those of the next half second too.
	sharedBypassAfter = 2
)

// sharedOwners is the Redis side of respOwners: each relayed response's
// owner is written under a key made from a hash of its id (a client-chosen
// id cannot make an odd or long key), with the map's TTL, so a replica
// that did not relay it finds its backend and tenant there instead of
// probing the backends.
//
// Nothing waits on Redis longer than Timeout, and after sharedBypassAfter
// failures in a row (unreachable, hung, unusable) nothing waits on it at
// all: Redis is bypassed (redisconn.Bypass, on the gateway's clock) until
// one lookup, write or mark check (respmark.go), after a back-off of 0.5s
// doubling to 10s, finds it back. A lookup that cannot ask Redis says so (*errIDsUnavailable): the
// caller decides what an unanswered lookup means (follow-ups probe the
// backends; previous_response_id is refused with a 503). Writes go
// through a bounded queue to one writer goroutine, owned by respOwners
// and stopped by close, so the relayed answer never waits for them.
// Writes Redis cannot take (bypassed, or failing for an outage) are held
// (heldWrites: bounded, expiring with the ids' TTL) and replayed, each
// Cluster master's oldest first, when the bypass ends, whoever's probe ends it, or when the
// writer's own retry finds Redis back: a continuation of a response made
// during the outage reaches its owner through any replica once Redis is
// back. Lookups never dial: while
// there is no connection they fail at once and ask the writer to dial
// (spaced by sharedRedial).
type sharedOwners struct {
	conn   *redisconn.Lazy[sharedConn]
	prefix string
	// timeout is ResponseIDsRedis.Timeout, in nanoseconds; atomic so a
	// test can bound the calls made while it freezes Redis apart from
	// those before, which must succeed on a loaded machine.
	timeout atomic.Int64
	ttl     time.Duration
	now     func() time.Time
	bypass  *redisconn.NodeBypass

	queue     chan sharedWrite
	dial      chan struct{} // cap 1: a lookup found no connection
	recovered chan struct{} // cap 1: a probe ended the bypass
	stop      chan struct{}
	done      chan struct{}

	// held, retryIn and mark are the writer's alone: the writes Redis
	// could not take, the wait before Redis may be tried again (from the
	// bypass), and this replica's mark (respmark.go).
	held    *heldWrites
	retryIn time.Duration
	mark    sharedMark
	rw      rewriting // a rewrite under way (respmark.go)
	// holdings are the owners this replica's map holds, as writes: what a
	// Redis that lost them is written again (respmark.go).
	holdings func() []sharedWrite
	log      *slog.Logger

	hit, miss, lookupErr, lookupSkipped       prometheus.Counter
	written, writeErr, dropped, heldW, replay prometheus.Counter
	rewritten, rewriteFailed, lost            prometheus.Counter
	heldShutdown                              prometheus.Counter
}

// errIDsUnavailable is a lookup Redis could not answer: it failed, or is
// bypassed after failures. retry is the wait before Redis is tried again
// (0: at once).
type errIDsUnavailable struct {
	retry time.Duration
	err   error
}

func (e *errIDsUnavailable) Error() string {
	return "responses ids: redis could not be asked: " + e.err.Error()
}

func (e *errIDsUnavailable) Unwrap() error { return e.err }

// errBypassed is the cause of a lookup or write skipped by the bypass.
var errBypassed = errors.New("bypassed after failures")

type sharedConn struct{ c rueidis.Client }

// sharedWrite is one owner to set, or (del) an id to forget, made at at:
// the key expires (and a held write is dropped) a TTL after it.
type sharedWrite struct {
	key   string
	value []byte
	del   bool
	at    time.Time
}

// sharedValue is an owner as Redis holds it.
type sharedValue struct {
	Backend string `json:"b"`
	Tenant  string `json:"t,omitempty"`
	At      int64  `json:"at"` // unix milliseconds
}

// newSharedOwners starts the writer; holdings lists the owners the
// replica's map holds, to be written again when Redis lost them.
func newSharedOwners(reg prometheus.Registerer, log *slog.Logger, opt ResponseIDsRedis, maxIDs int, ttl time.Duration, now func() time.Time,
	holdings func() []sharedWrite) *sharedOwners {
	if log == nil {
		log = slog.Default()
	}
	if opt.Prefix == "" {
		opt.Prefix = defaultSharedPrefix
	}
	if opt.Timeout <= 0 {
		opt.Timeout = defaultSharedTimeout
	}
	if opt.MaxHeld <= 0 {
		opt.MaxHeld = min(sharedHeld, maxIDs)
	}
	build := func(c rueidis.Client) *sharedConn { return &sharedConn{c} }
	// Dials are spaced on the wall clock: a test's frozen clock must not
	// stop the writer from ever dialling again.
	s := &sharedOwners{conn: redisconn.NewSharedLazy(opt.Clients, opt.Client, build, sharedRedial, nil), prefix: opt.Prefix,
		ttl: ttl, now: now, mark: newSharedMark(opt.Prefix), holdings: holdings, log: log,
		queue: make(chan sharedWrite, sharedQueue), dial: make(chan struct{}, 1), recovered: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	s.timeout.Store(int64(opt.Timeout))
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_responses_ids_redis_lookups_total",
		Help: "Response ids the gateway did not remember, asked of Redis (shared by replicas), by result: hit, miss, " +
			"error (Redis unreachable or slower than its timeout, or a value that is not an owner), bypassed (not asked: " +
			"Redis is bypassed after failures). Unanswered, a follow-up asks the backends in turn; a previous_response_id " +
			"is refused with a 503 and Retry-After."},
		[]string{"result"})
	writes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_responses_ids_redis_writes_total",
		Help: "Response owners written to (or ids deleted from) Redis, by result: ok (at once), held (Redis bypassed, " +
			"or unreachable or slow: kept to be replayed when it is back), replayed (a held write written), error " +
			"(an error reply, e.g. OOM: not retried), dropped (the write queue was full), rewritten (written again: " +
			"Redis had lost this replica's writes), rewrite_failed (one Redis could not take then, a master down or Redis " +
			"away: counted once, written again at each check, each second, until it lands as rewritten). Other replicas find an id not written as one never made: by asking the backends."},
		[]string{"result"})
	s.hit, s.miss, s.lookupErr = lookups.WithLabelValues("hit"), lookups.WithLabelValues("miss"), lookups.WithLabelValues("error")
	s.lookupSkipped = lookups.WithLabelValues("bypassed")
	s.written, s.writeErr, s.dropped = writes.WithLabelValues("ok"), writes.WithLabelValues("error"), writes.WithLabelValues("dropped")
	s.heldW, s.replay = writes.WithLabelValues("held"), writes.WithLabelValues("replayed")
	s.rewritten, s.rewriteFailed = writes.WithLabelValues("rewritten"), writes.WithLabelValues("rewrite_failed")
	lost := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_responses_ids_redis_lost_total",
		Help: "Times Redis was found to have lost the owners this replica wrote (its mark gone or older: restarted " +
			"empty, flushed, or an older snapshot or replica); each time the ids this replica holds are written again."})
	s.lost = lost
	heldDropped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_responses_ids_redis_held_dropped_total",
		Help: "Held owner writes (Redis bypassed) dropped before they could be replayed, by reason: bound (the oldest, " +
			"beyond the held writes' bound), expired (older than the ids' TTL: the key would have expired), shutdown " +
			"(still held when the gateway stopped: lost with it)."},
		[]string{"reason"})
	s.held = newHeldWrites(opt.MaxHeld, ttl, heldDropped.WithLabelValues("bound"), heldDropped.WithLabelValues("expired"))
	s.heldShutdown = heldDropped.WithLabelValues("shutdown")
	degraded := prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_responses_ids_redis_degraded",
		Help: "1 while the Responses ids' Redis is bypassed after failures (unreachable, hung, unusable): lookups skip " +
			"it and writes are held (replayed when it is back) until one, after a back-off of 0.5s doubling to 10s, finds it back."})
	degradedNodes := prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_responses_ids_redis_degraded_nodes",
		Help: "Redis Cluster masters bypassed now: the ids whose slots they serve are not known here (their writes held), " +
			"the others are served."})
	s.bypass = redisconn.NewNodeBypass(redisconn.BypassOptions{Threshold: sharedBypassAfter, Logger: log, Gauge: degraded,
		DownMsg: "responses ids: redis unavailable; bypassing it (follow-ups probe the backends, previous_response_id " +
			"not known here is refused with 503) until it recovers",
		UpMsg: "responses ids: redis recovered", OnRecover: s.wake}, degradedNodes)
	reg.MustRegister(lookups, writes, lost, heldDropped, degraded, degradedNodes, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_responses_ids_redis_queued",
		Help: "Response owner writes waiting for Redis (bounded; beyond it they are dropped)."},
		func() float64 { return float64(len(s.queue)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_responses_ids_redis_held",
			Help: "Response owner writes Redis could not take (bypassed, unreachable or slow), held to be replayed when " +
				"it is back (bounded: beyond it the oldest are dropped)."},
			func() float64 { return float64(s.held.n.Load()) }))
	go s.run()
	return s
}

// callTimeout bounds one call to Redis (a lookup, a batch of writes, a
// mark check).
func (s *sharedOwners) callTimeout() time.Duration { return time.Duration(s.timeout.Load()) }

// key is id's Redis key: the prefix and a hash of the id, so any id makes
// a short key of hex digits.
func (s *sharedOwners) key(id string) string {
	sum := sha256.Sum256([]byte(id))
	return s.prefix + hex.EncodeToString(sum[:16])
}

// set queues id's owner for Redis, never waiting.
func (s *sharedOwners) set(id string, o respOwner) { s.enqueue(s.write1(id, o)) }

// write1 is the write that sets id's owner.
func (s *sharedOwners) write1(id string, o respOwner) sharedWrite {
	v, _ := json.Marshal(sharedValue{Backend: o.backend, Tenant: o.tenant, At: o.at.UnixMilli()}) // strings and an int: cannot fail
	return sharedWrite{key: s.key(id), value: v, at: o.at}
}

// del queues id's removal from Redis, never waiting.
func (s *sharedOwners) del(id string) { s.enqueue(sharedWrite{key: s.key(id), del: true, at: s.now()}) }

// wake tells the writer the bypass ended (the bypass' OnRecover), never
// waiting: it replays what it holds.
func (s *sharedOwners) wake() {
	select {
	case s.recovered <- struct{}{}:
	default:
	}
}

func (s *sharedOwners) enqueue(w sharedWrite) {
	select {
	case s.queue <- w:
	default:
		s.dropped.Inc()
	}
}

// get is id's owner as Redis holds it, within the timeout; false when
// Redis does not have it. An error (*errIDsUnavailable) says Redis could
// not be asked. Every lookup is counted.
func (s *sharedOwners) get(ctx context.Context, id string) (respOwner, bool, error) {
	now := s.now()
	conn := s.conn.Loaded()
	var client rueidis.Client
	if conn != nil {
		client = conn.c
	}
	key := s.key(id)
	call, retry, ok := s.bypass.Admit(now, client, key)
	if !ok {
		s.lookupSkipped.Inc()
		return respOwner{}, false, &errIDsUnavailable{retry: retry, err: errBypassed}
	}
	if conn == nil {
		select {
		case s.dial <- struct{}{}:
		default:
		}
		s.lookupErr.Inc()
		retry, _ := call.Down(now, redisconn.ErrUnavailable)
		return respOwner{}, false, &errIDsUnavailable{retry: retry, err: redisconn.ErrUnavailable}
	}
	cctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	defer cancel()
	b, err := conn.c.Do(cctx, conn.c.B().Get().Key(key).Build()).AsBytes()
	switch {
	case rueidis.IsRedisNil(err):
		call.Up()
		s.miss.Inc()
		return respOwner{}, false, nil
	case err != nil && ctx.Err() != nil: // the caller gave up: nothing said of Redis
		call.Abandon()
		s.lookupErr.Inc()
		return respOwner{}, false, &errIDsUnavailable{err: err}
	case redisconn.IsOutage(err):
		s.lookupErr.Inc()
		retry, _ := call.Down(s.now(), err)
		return respOwner{}, false, &errIDsUnavailable{retry: retry, err: err}
	}
	call.Up()
	o, derr := decodeShared(b)
	if err != nil || derr != nil { // an error reply (WRONGTYPE), or not an owner: another program's key
		s.lookupErr.Inc()
		return respOwner{}, false, nil
	}
	if now.Sub(o.at) > s.ttl { // the map's TTL on the gateway's clock, as for its own ids
		s.miss.Inc()
		return respOwner{}, false, nil
	}
	s.hit.Inc()
	return o, true, nil
}

var errSharedValue = errors.New("not a response owner")

// decodeShared reads a value set wrote. Redis is the deployment's, but a
// value another program (or an older Sluice) left under the key must not
// be taken for an owner: anything else is an error.
func decodeShared(b []byte) (respOwner, error) {
	if len(b) > maxSharedValue {
		return respOwner{}, errSharedValue
	}
	var v sharedValue
	if err := json.Unmarshal(b, &v); err != nil || v.Backend == "" || v.At <= 0 {
		return respOwner{}, errSharedValue
	}
	return respOwner{backend: v.Backend, tenant: v.Tenant, at: time.UnixMilli(v.At)}, nil
}

// run is the writer: it dials when asked (or when it has writes and no
// connection) and writes what is queued, a batch per round trip, until
// close; while it holds writes Redis could not take, it retries them when
// the bypass ends or its back-off has passed (on the wall clock, at most
// sharedRedial apart: a test's frozen clock must not stop it for good).
// At close it writes what is left, within one timeout, and returns.
func (s *sharedOwners) run() {
	defer close(s.done)
	s.conn.Get() // dial at start, off the request path; failures are retried when asked
	s.check(context.Background())
	batch := make([]sharedWrite, 0, sharedBatch)
	retry := time.NewTimer(sharedRedial)
	defer retry.Stop()
	check := time.NewTicker(sharedCheckEvery)
	defer check.Stop()
	ready := make(chan struct{}) // closed: a rewrite's next chunk may go
	close(ready)
	for {
		var retryC <-chan time.Time
		if s.held.len() > 0 {
			retry.Reset(min(max(s.retryIn, heldRetryMin), sharedRedial))
			retryC = retry.C
		}
		var rewriteC <-chan struct{}
		if len(s.rw.left) > 0 {
			rewriteC = ready
		}
		select {
		case <-rewriteC:
			// The fresh writes queued by now go first: a rewrite's chunk
			// never holds one longer than a round trip.
			s.flush(context.Background(), s.fill(batch[:0]))
			s.rewriteStep(context.Background())
		case w := <-s.queue:
			s.flush(context.Background(), s.fill(append(batch[:0], w)))
		case <-s.recovered: // back, maybe empty: checked before the replay
			s.check(context.Background())
			s.flush(context.Background(), nil)
		case <-check.C:
			// A replica whose dial failed (Redis away at its start, or
			// slow to answer it) dials again here, spaced by sharedRedial:
			// otherwise only a request finding no connection asked for a
			// dial, and that request went without Redis.
			if s.conn.Loaded() == nil {
				s.conn.Get()
			}
			s.check(context.Background())
		case <-retryC:
			s.flush(context.Background(), nil)
		case <-s.dial:
			s.conn.Get()
		case <-s.stop:
			ctx, cancel := context.WithTimeout(context.Background(), s.callTimeout())
			defer cancel()
			for batch = s.fill(batch[:0]); ctx.Err() == nil; batch = s.fill(batch[:0]) {
				s.flush(ctx, batch)
				if len(batch) == 0 {
					break
				}
			}
			s.abandonHeld()
			return
		}
	}
}

// abandonHeld counts and logs the writes still held as the writer stops
// (Redis away at shutdown): they live in this process only, and go with
// it. Elsewhere, and after a restart, those ids are ones nobody
// remembers: a follow-up or a previous_response_id asks the backends
// which holds the response (followup.go, locate.go), and with auth on no
// tenant check applies to them. Persisting them (the data directory) was
// judged not worth it: see docs/RELIABILITY.md, branch durableleft.
func (s *sharedOwners) abandonHeld() {
	n := s.held.len()
	if n == 0 {
		return
	}
	s.heldShutdown.Add(float64(n))
	s.log.Warn("responses ids: redis still unavailable at shutdown; the owners of responses made during the outage "+
		"are lost with this process (their continuations and follow-ups elsewhere ask the backends which holds them)",
		"held", n)
}

// fill adds queued writes to batch, up to sharedBatch, without waiting.
func (s *sharedOwners) fill(batch []sharedWrite) []sharedWrite {
	for len(batch) < sharedBatch {
		select {
		case w := <-s.queue:
			batch = append(batch, w)
		default:
			return batch
		}
	}
	return batch
}

// flush replays the held writes, each master's oldest first, a round
// trip per sharedBatch of one master's, then writes batch (newer: a held
// write to one of its keys is dropped, a newer write to a key wins). A
// master whose writes Redis cannot take now keeps the rest of its held
// writes, and batch's writes to it are held behind them; the other
// masters' are written (before, one master down held every write).
func (s *sharedOwners) flush(ctx context.Context, batch []sharedWrite) {
	blocked := s.replayHeld(ctx)
	if ctx.Err() != nil {
		s.hold(batch)
		return
	}
	var now []sharedWrite
	for _, w := range batch {
		s.held.forget(w.key)
		if blocked[s.master(w.key)] {
			s.hold([]sharedWrite{w})
			continue
		}
		now = append(now, w)
	}
	s.hold(s.write(ctx, now, s.written))
}

// replayHeld replays the held writes master by master until what is left
// waits for masters Redis cannot take now, returned (a single Redis, or
// before the slot map is known: one master, "").
func (s *sharedOwners) replayHeld(ctx context.Context) map[string]bool {
	blocked := map[string]bool{}
	for _, node := range s.held.nodes() {
		for !blocked[node] && ctx.Err() == nil {
			hws := s.held.oldest(s.now(), node, sharedBatch)
			if len(hws) == 0 {
				break
			}
			ws := make([]sharedWrite, len(hws))
			for i, hw := range hws {
				ws[i] = hw.w
			}
			var failed map[string]bool
			for _, w := range s.write(ctx, ws, s.replay) {
				if failed == nil {
					failed = map[string]bool{}
				}
				failed[w.key] = true
				blocked[s.master(w.key)] = true
			}
			if s.held.settle(hws, failed, s.master) > 0 {
				blocked[node] = true // its oldest failed: the rest waits (the map may have moved meanwhile)
			}
		}
	}
	return blocked
}

// master is the Redis Cluster master serving key now, "" on a single
// Redis, without a connection, or before the slot map is known.
func (s *sharedOwners) master(key string) string {
	conn := s.conn.Loaded()
	if conn == nil {
		return ""
	}
	return s.bypass.Master(conn.c, key)
}

// hold keeps writes Redis did not take, to be replayed.
func (s *sharedOwners) hold(ws []sharedWrite) {
	for _, w := range ws {
		s.held.hold(w, s.master(w.key))
	}
	s.heldW.Add(float64(len(ws)))
}

// write sends batch in one pipeline within the timeout (and ctx), counting
// each write it lands in ok; it returns the writes Redis could not take:
// all of them while bypassed or without a connection, those that failed
// for an outage otherwise. An error reply (OOM) is Redis answering: that
// write is counted and not retried.
func (s *sharedOwners) write(ctx context.Context, batch []sharedWrite, ok prometheus.Counter) (failed []sharedWrite) {
	if len(batch) == 0 {
		return nil
	}
	conn := s.conn.Loaded()
	if conn == nil {
		return s.writeTo(ctx, nil, batch, ok)
	}
	// On a Redis Cluster each master's writes are admitted by its own
	// bypass: a master that is down holds only its keys' writes.
	keys := make([]string, len(batch))
	for i, w := range batch {
		keys[i] = w.key
	}
	groups := s.bypass.Group(conn.c, keys)
	if len(groups) == 1 {
		return s.writeTo(ctx, conn, batch, ok)
	}
	for _, g := range groups {
		part := make([]sharedWrite, len(g))
		for i, j := range g {
			part[i] = batch[j]
		}
		failed = append(failed, s.writeTo(ctx, conn, part, ok)...)
	}
	return failed
}

// writeTo is write for writes that go to one master (or a single Redis):
// conn, nil when there is no connection yet (dialled here).
func (s *sharedOwners) writeTo(ctx context.Context, conn *sharedConn, batch []sharedWrite, ok prometheus.Counter) (failed []sharedWrite) {
	var client rueidis.Client
	keys := make([]string, len(batch))
	if conn != nil {
		client = conn.c
		for i, w := range batch {
			keys[i] = w.key
		}
	}
	call, retry, admitted := s.bypass.Admit(s.now(), client, keys...)
	if !admitted {
		s.retryIn = retry
		return batch
	}
	if conn == nil {
		var err error
		if conn, err = s.conn.Get(); err != nil {
			s.retryIn, _ = call.Down(s.now(), err)
			return batch
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	defer cancel()
	c := conn.c
	now := s.now()
	cmds := make(rueidis.Commands, 0, len(batch))
	sent := make([]sharedWrite, 0, len(batch))
	for _, w := range batch {
		if w.del {
			cmds = append(cmds, c.B().Del().Key(w.key).Build())
		} else if left := w.at.Add(s.ttl).Sub(now); left >= time.Millisecond { // the key expires when the id does
			cmds = append(cmds, c.B().Set().Key(w.key).Value(rueidis.BinaryString(w.value)).PxMilliseconds(left.Milliseconds()).Build())
		} else {
			continue
		}
		sent = append(sent, w)
	}
	if len(cmds) == 0 {
		call.Abandon()
		return nil
	}
	var outage error
	for i, r := range c.DoMulti(ctx, cmds...) {
		switch err := r.Error(); {
		case err == nil:
			ok.Inc()
		case redisconn.IsOutage(err):
			outage = err
			failed = append(failed, sent[i])
		default:
			s.writeErr.Inc()
		}
	}
	switch {
	case outage != nil:
		s.retryIn, _ = call.Down(s.now(), outage)
	default:
		call.Up()
	}
	return failed
}

// close stops the writer (after its last writes, within the timeout) and
// closes the connection.
func (s *sharedOwners) close() {
	close(s.stop)
	<-s.done
	s.bypass.Close()
	s.conn.Close()
}
