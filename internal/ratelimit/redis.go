package ratelimit

import (
	"context"
	"crypto/sha1"
	_ "embed" // gcra.lua
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/rate"
)

//go:embed gcra.lua
var gcraScript string

// RedisOptions configure a RedisStore. The zero value is ready to use.
type RedisOptions struct {
	// Prefix starts every bucket key. Default "sluice:rl:".
	Prefix string
	// CallerClock makes the script use the now passed to each call instead
	// of the Redis server's TIME. Off by default, and it should stay off
	// with more than one gateway replica: replica clocks drift by
	// milliseconds or more, and a bucket judged on several clocks admits
	// more (or less) than its rate. With Redis TIME every bucket lives on
	// one server and so on one clock (on a Cluster, the clock of the master
	// that owns the key's slot). Tests use CallerClock to replay exact times.
	CallerClock bool
	// TTLSlack is how long a bucket key outlives the moment it would drain
	// to idle; it only costs memory. Default 1s, or 1m with CallerClock
	// (margin for a caller whose clock runs ahead of the server's).
	TTLSlack time.Duration
}

// RedisStore keeps buckets in Redis, a single node or a Cluster, and runs
// every operation as one EVALSHA of gcra.lua: one atomic round trip per
// bucket, and Apply pipelines all of a request's buckets into one round trip
// (per Cluster node). Keys are "<prefix>{<key>}": the hash tag puts every
// key the script touches in one slot, which Redis Cluster requires of a
// script. Buckets expire once idle (TTL = drain time + TTLSlack), so idle
// keys cost nothing.
//
// The client is the caller's and stays open; rueidis pipelines concurrent
// commands on shared connections, so one client serves every goroutine.
// Operations are never retried by the client: a take that may have run
// must not run twice.
type RedisStore struct {
	client rueidis.Client
	script *rueidis.Lua
	sha    string
	prefix string
	caller bool
	slack  string // milliseconds, as the script wants it
}

// NewRedisStore returns a store using client.
func NewRedisStore(client rueidis.Client, opts RedisOptions) *RedisStore {
	if opts.Prefix == "" {
		opts.Prefix = config.DefaultRateLimitRedisPrefix
	}
	if opts.TTLSlack <= 0 {
		opts.TTLSlack = time.Second
		if opts.CallerClock {
			opts.TTLSlack = time.Minute
		}
	}
	sum := sha1.Sum([]byte(gcraScript))
	return &RedisStore{
		client: client,
		script: rueidis.NewLuaScript(gcraScript),
		sha:    hex.EncodeToString(sum[:]),
		prefix: opts.Prefix,
		caller: opts.CallerClock,
		slack:  strconv.FormatInt(opts.TTLSlack.Milliseconds(), 10),
	}
}

// Take implements Store.
func (s *RedisStore) Take(ctx context.Context, key string, l Limit, cost int64, now time.Time) (Decision, error) {
	return s.one(ctx, Op{Key: key, Limit: l, Cost: cost}, now)
}

// Charge implements Store.
func (s *RedisStore) Charge(ctx context.Context, key string, l Limit, cost int64, now time.Time) (Decision, error) {
	return s.one(ctx, Op{Key: key, Limit: l, Cost: cost, Force: true}, now)
}

func (s *RedisStore) one(ctx context.Context, op Op, now time.Time) (Decision, error) {
	if err := checkOp(op); err != nil {
		return Decision{}, err
	}
	keys, args := s.command(op, s.nowArg(now))
	// Exec sends EVALSHA and falls back to EVAL (which loads the script) on
	// NOSCRIPT, e.g. after a Redis restart.
	return s.parse(op, s.script.Exec(ctx, s.client, keys, args))
}

// Apply implements Store, pipelining the operations.
func (s *RedisStore) Apply(ctx context.Context, ops []Op, now time.Time) ([]Decision, error) {
	for _, op := range ops {
		if err := checkOp(op); err != nil {
			return nil, err
		}
	}
	out, errs := s.ApplyEach(ctx, ops, now)
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ApplyEach is Apply with each operation's outcome apart, in one round
// trip (per Cluster master): a master that fails fails its operations
// alone, and those on the other masters are still answered. The ops must
// have been checked (checkOp).
func (s *RedisStore) ApplyEach(ctx context.Context, ops []Op, now time.Time) ([]Decision, []error) {
	nowArg := s.nowArg(now)
	cmds := make(rueidis.Commands, len(ops))
	for i, op := range ops {
		keys, args := s.command(op, nowArg)
		cmds[i] = s.client.B().Evalsha().Sha1(s.sha).Numkeys(1).Key(keys...).Arg(args...).Build()
	}
	out := make([]Decision, len(ops))
	errs := make([]error, len(ops))
	for i, r := range s.client.DoMulti(ctx, cmds...) {
		if rerr, ok := rueidis.IsRedisErr(r.Error()); ok && rerr.IsNoScript() {
			// The script is not cached on that node yet: this op did not
			// run, so running it now (EVAL loads the script) is safe.
			keys, args := s.command(ops[i], nowArg)
			r = s.script.Exec(ctx, s.client, keys, args)
		}
		out[i], errs[i] = s.parse(ops[i], r)
	}
	return out, errs
}

// Key is the Redis key holding the bucket for key.
func (s *RedisStore) Key(key string) string {
	var b strings.Builder
	b.Grow(len(s.prefix) + len(key) + 2)
	b.WriteString(s.prefix)
	b.WriteByte('{')
	b.WriteString(key)
	b.WriteByte('}')
	return b.String()
}

func (s *RedisStore) nowArg(now time.Time) string {
	if !s.caller {
		return ""
	}
	return strconv.FormatInt(now.UnixMicro()-epochMicros, 10)
}

// command builds the script's KEYS and ARGV (see gcra.lua).
func (s *RedisStore) command(op Op, nowArg string) (keys, args []string) {
	p := paramsOf(op.Limit)
	force := "0"
	if op.Force {
		force = "1"
	}
	return []string{s.Key(op.Key)}, []string{
		p.intervalArg(),
		strconv.FormatInt(p.capacity, 10),
		strconv.FormatInt(p.delay, 10),
		strconv.FormatInt(op.Cost, 10),
		force,
		nowArg,
		s.slack,
	}
}

func (s *RedisStore) parse(op Op, r rueidis.RedisResult) (Decision, error) {
	v, err := r.AsIntSlice()
	if err != nil {
		return Decision{}, fmt.Errorf("ratelimit: redis bucket %q: %w", op.Key, err)
	}
	return replyDecision(op, v)
}

// maxReplyMicros bounds the durations gcra.lua can return: a bucket's tat
// is at most span+maxDebt ahead (both at most rate.MaxRefill), stored
// under a limit a reload may since have shortened, and a refusal's wait
// adds at most one more span. Four refills is past all of it.
const maxReplyMicros = 4 * int64(rate.MaxRefill/time.Microsecond)

// replyDecision reads the script's six integers (allowed, never fits,
// delay, retry, remaining, reset). A reply the script cannot have made (a
// flag not 0 or 1, a count past the bucket, a negative or a years-long
// wait) is an error, the store's failure mode, not a decision: a Delay
// of 2^62 µs read as written held the request until its client left.
func replyDecision(op Op, v []int64) (Decision, error) {
	if len(v) != 6 {
		return Decision{}, fmt.Errorf("ratelimit: redis bucket %q: %w (%d values)", op.Key, errReply, len(v))
	}
	flag := func(x int64) bool { return x == 0 || x == 1 }
	wait := func(x int64) bool { return x >= 0 && x <= maxReplyMicros }
	if !flag(v[0]) || !flag(v[1]) || v[0]+v[1] == 2 || !wait(v[2]) || !wait(v[3]) || !wait(v[5]) ||
		v[4] < 0 || v[4] > op.Limit.Capacity() {
		return Decision{}, fmt.Errorf("ratelimit: redis bucket %q: %w (%v)", op.Key, errReply, v)
	}
	o := outcome{
		allowed: v[0] == 1, neverFits: v[1] == 1,
		delay: v[2], retry: v[3], remain: v[4], reset: v[5],
	}
	return o.decision(op.Limit), nil
}

var errReply = errors.New("unexpected script reply")
