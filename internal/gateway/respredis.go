package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
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
	// sharedRedial spaces dials while Redis is unreachable.
	sharedRedial = time.Second
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
// one lookup or write, after a back-off of 0.5s doubling to 10s, finds it
// back. A lookup that cannot ask Redis says so (*errIDsUnavailable): the
// caller decides what an unanswered lookup means (follow-ups probe the
// backends; previous_response_id is refused with a 503). Writes go
// through a bounded queue to one writer goroutine, owned by respOwners
// and stopped by close, so the relayed answer never waits for them;
// while bypassed they are skipped (counted), and other replicas find
// those ids as they find ids never written. Lookups never dial: while
// there is no connection they fail at once and ask the writer to dial
// (spaced by sharedRedial).
type sharedOwners struct {
	conn    *redisconn.Lazy[sharedConn]
	prefix  string
	timeout time.Duration
	ttl     time.Duration
	now     func() time.Time
	bypass  *redisconn.Bypass

	queue chan sharedWrite
	dial  chan struct{} // cap 1: a lookup found no connection
	stop  chan struct{}
	done  chan struct{}

	hit, miss, lookupErr, lookupSkipped prometheus.Counter
	written, writeErr, dropped, skipped prometheus.Counter
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

// sharedWrite is one owner to set, or (del) an id to forget.
type sharedWrite struct {
	key   string
	value []byte
	del   bool
}

// sharedValue is an owner as Redis holds it.
type sharedValue struct {
	Backend string `json:"b"`
	Tenant  string `json:"t,omitempty"`
	At      int64  `json:"at"` // unix milliseconds
}

func newSharedOwners(reg prometheus.Registerer, log *slog.Logger, opt ResponseIDsRedis, ttl time.Duration, now func() time.Time) *sharedOwners {
	if opt.Prefix == "" {
		opt.Prefix = defaultSharedPrefix
	}
	if opt.Timeout <= 0 {
		opt.Timeout = defaultSharedTimeout
	}
	build := func(c rueidis.Client) *sharedConn { return &sharedConn{c} }
	// Dials are spaced on the wall clock: a test's frozen clock must not
	// stop the writer from ever dialling again.
	s := &sharedOwners{conn: redisconn.NewSharedLazy(opt.Clients, opt.Client, build, sharedRedial, nil), prefix: opt.Prefix,
		timeout: opt.Timeout, ttl: ttl, now: now,
		queue: make(chan sharedWrite, sharedQueue), dial: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_responses_ids_redis_lookups_total",
		Help: "Response ids the gateway did not remember, asked of Redis (shared by replicas), by result: hit, miss, " +
			"error (Redis unreachable or slower than its timeout, or a value that is not an owner), bypassed (not asked: " +
			"Redis is bypassed after failures). Unanswered, a follow-up asks the backends in turn; a previous_response_id " +
			"is refused with a 503 and Retry-After."},
		[]string{"result"})
	writes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_responses_ids_redis_writes_total",
		Help: "Response owners written to (or ids deleted from) Redis, by result: ok, error (Redis unreachable or " +
			"slow), dropped (the write queue was full), skipped (Redis bypassed after failures). Other replicas find an " +
			"id not written by asking the backends."},
		[]string{"result"})
	s.hit, s.miss, s.lookupErr = lookups.WithLabelValues("hit"), lookups.WithLabelValues("miss"), lookups.WithLabelValues("error")
	s.lookupSkipped = lookups.WithLabelValues("bypassed")
	s.written, s.writeErr, s.dropped = writes.WithLabelValues("ok"), writes.WithLabelValues("error"), writes.WithLabelValues("dropped")
	s.skipped = writes.WithLabelValues("skipped")
	degraded := prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_responses_ids_redis_degraded",
		Help: "1 while the Responses ids' Redis is bypassed after failures (unreachable, hung, unusable): lookups and " +
			"writes skip it until one, after a back-off of 0.5s doubling to 10s, finds it back."})
	s.bypass = redisconn.NewBypass(redisconn.BypassOptions{Threshold: sharedBypassAfter, Logger: log, Gauge: degraded,
		DownMsg: "responses ids: redis unavailable; bypassing it (follow-ups probe the backends, previous_response_id " +
			"not known here is refused with 503) until it recovers",
		UpMsg: "responses ids: redis recovered"})
	reg.MustRegister(lookups, writes, degraded, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_responses_ids_redis_queued",
		Help: "Response owner writes waiting for Redis (bounded; beyond it they are dropped)."},
		func() float64 { return float64(len(s.queue)) }))
	go s.run()
	return s
}

// key is id's Redis key: the prefix and a hash of the id, so any id makes
// a short key of hex digits.
func (s *sharedOwners) key(id string) string {
	sum := sha256.Sum256([]byte(id))
	return s.prefix + hex.EncodeToString(sum[:16])
}

// set queues id's owner for Redis, never waiting.
func (s *sharedOwners) set(id string, o respOwner) {
	v, _ := json.Marshal(sharedValue{Backend: o.backend, Tenant: o.tenant, At: o.at.UnixMilli()}) // strings and an int: cannot fail
	s.enqueue(sharedWrite{key: s.key(id), value: v})
}

// del queues id's removal from Redis, never waiting.
func (s *sharedOwners) del(id string) { s.enqueue(sharedWrite{key: s.key(id), del: true}) }

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
	call, retry, ok := s.bypass.Admit(now)
	if !ok {
		s.lookupSkipped.Inc()
		return respOwner{}, false, &errIDsUnavailable{retry: retry, err: errBypassed}
	}
	conn := s.conn.Loaded()
	if conn == nil {
		select {
		case s.dial <- struct{}{}:
		default:
		}
		s.lookupErr.Inc()
		retry, _ := call.Down(now, redisconn.ErrUnavailable)
		return respOwner{}, false, &errIDsUnavailable{retry: retry, err: redisconn.ErrUnavailable}
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	b, err := conn.c.Do(cctx, conn.c.B().Get().Key(s.key(id)).Build()).AsBytes()
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
// close; then it writes what is left, within one timeout, and returns.
func (s *sharedOwners) run() {
	defer close(s.done)
	s.conn.Get() // dial at start, off the request path; failures are retried when asked
	batch := make([]sharedWrite, 0, sharedBatch)
	for {
		select {
		case w := <-s.queue:
			batch = s.fill(append(batch[:0], w))
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			s.write(ctx, batch)
			cancel()
		case <-s.dial:
			s.conn.Get()
		case <-s.stop:
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			defer cancel()
			for batch = s.fill(batch[:0]); len(batch) > 0 && ctx.Err() == nil; batch = s.fill(batch[:0]) {
				s.write(ctx, batch)
			}
			return
		}
	}
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

// write sends batch in one pipeline within ctx, counting each write;
// while Redis is bypassed the batch is skipped.
func (s *sharedOwners) write(ctx context.Context, batch []sharedWrite) {
	call, _, ok := s.bypass.Admit(s.now())
	if !ok {
		s.skipped.Add(float64(len(batch)))
		return
	}
	conn, err := s.conn.Get()
	if err != nil {
		call.Down(s.now(), err)
		s.writeErr.Add(float64(len(batch)))
		return
	}
	c := conn.c
	ms := s.ttl.Milliseconds()
	cmds := make(rueidis.Commands, len(batch))
	for i, w := range batch {
		if w.del {
			cmds[i] = c.B().Del().Key(w.key).Build()
		} else {
			cmds[i] = c.B().Set().Key(w.key).Value(rueidis.BinaryString(w.value)).PxMilliseconds(ms).Build()
		}
	}
	var outage error
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			s.writeErr.Inc()
			if redisconn.IsOutage(err) {
				outage = err
			}
		} else {
			s.written.Inc()
		}
	}
	if outage != nil {
		call.Down(s.now(), outage)
	} else {
		call.Up()
	}
}

// close stops the writer (after its last writes, within the timeout) and
// closes the connection.
func (s *sharedOwners) close() {
	close(s.stop)
	<-s.done
	s.conn.Close()
}
