package cache

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// TestLazyRedisBypassesAFailedRedis: a hung Redis (SIGSTOP: connections
// open, nothing answered) costs the first BypassAfter calls their
// timeout; the calls after them fail at once with ErrBypassed (no wait for Redis) until the
// back-off has passed; then one call retries and, Redis resumed, ends the
// bypass. One log line when it starts, one when it ends. The same for a
// Redis killed and restarted empty. Before, every call waited for the
// timeout while Redis hung.
func TestLazyRedisBypassesAFailedRedis(t *testing.T) {
	rd := redistest.Start(t)
	now := time.Unix(1000, 0)
	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	l := NewLazyRedis(nil, redisconn.Option(config.Redis{Addrs: []string{rd.Addr}}), RedisOptions{}, 200*time.Millisecond,
		func() time.Time { return now }, log)
	defer l.Close()
	ctx := context.Background()
	e := &Entry{Status: 200, Body: []byte("x")}
	if err := l.Set(ctx, "k", e, time.Minute); err != nil {
		t.Fatal(err)
	}

	for _, fault := range []struct {
		name       string
		start, end func()
	}{
		{"hung", rd.Pause, rd.Resume},
		{"killed", rd.Stop, rd.Restart},
	} {
		now = now.Add(LogEvery) // each fault's bypass is logged when it starts
		fault.start()
		for i := range BypassAfter {
			if l.Degraded() {
				t.Fatalf("%s: degraded after %d failures, want %d", fault.name, i, BypassAfter)
			}
			if _, _, err := l.Get(ctx, "fault"+strconv.Itoa(i)); err == nil || errors.Is(err, ErrBypassed) {
				t.Fatalf("%s: call %d: %v, want Redis' failure", fault.name, i, err)
			}
		}
		if !l.Degraded() {
			t.Fatalf("%s: not degraded after a failure", fault.name)
		}
		for i := range 20 {
			if _, _, err := l.Get(ctx, "fault"+strconv.Itoa(i)); !errors.Is(err, ErrBypassed) {
				t.Fatalf("%s: call %d within the back-off: %v, want ErrBypassed", fault.name, i, err)
			}
			if err := l.Set(ctx, "k", e, time.Minute); !errors.Is(err, ErrBypassed) {
				t.Fatalf("%s: set %d within the back-off: %v, want ErrBypassed", fault.name, i, err)
			}
		}
		fault.end()
		// Retry until Redis answers: each retry comes after the back-off
		// (a killed Redis takes rueidis a reconnect or two).
		var err error
		for i := 0; i < 50; i++ {
			now = now.Add(RedisMaxBackoff)
			if err = l.Set(ctx, "k", e, time.Minute); err == nil {
				break
			}
		}
		if err != nil || l.Degraded() {
			t.Fatalf("%s: after Redis is back: %v (degraded %v)", fault.name, err, l.Degraded())
		}
		if got, ok, err := l.Get(ctx, "k"); err != nil || !ok || string(got.Body) != "x" {
			t.Fatalf("%s: read after recovery: %v %v %v", fault.name, got, ok, err)
		}
	}
	out := logs.String()
	if n, m := strings.Count(out, "redis level unavailable"), strings.Count(out, "redis level recovered"); n != 2 || m != 2 {
		t.Fatalf("log lines: %d unavailable, %d recovered, want 2 and 2 (one each per failure run):\n%s", n, m, out)
	}

	// A bypass within LogEvery of a logged one that ends at its first
	// retry (a flap) is not logged; one whose first retry fails is, with
	// the count of the flaps before it.
	// (Keys never read before: "k" may be answered by the client-side cache.)
	n := 0
	get := func() {
		n++
		_, _, _ = l.Get(ctx, "absent"+strconv.Itoa(n))
	}
	flap := func(retries int) {
		rd.Pause()
		for range BypassAfter {
			get()
		}
		for range retries {
			now = now.Add(RedisMaxBackoff)
			get()
		}
		rd.Resume()
		for err := error(ErrBypassed); err != nil; err = l.Set(ctx, "k", e, time.Minute) {
			now = now.Add(RedisMaxBackoff)
		}
	}
	flap(0)
	flap(0)
	if out := logs.String(); strings.Count(out, "redis level unavailable") != 2 {
		t.Fatalf("flaps within LogEvery were logged:\n%s", out)
	}
	flap(1)
	out = logs.String()
	if strings.Count(out, "redis level unavailable") != 3 || !strings.Contains(out, "short_bypasses_unlogged=2") ||
		strings.Count(out, "redis level recovered") != 3 {
		t.Fatalf("a bypass whose retry failed: want it logged with 2 unlogged before it:\n%s", out)
	}
}

// TestLazyRedisErrorRepliesDoNotBypass: an error Redis answers (here OOM
// under maxmemory with noeviction) is not a Redis that is down: nothing is
// bypassed, each call gets Redis' answer. Under OOM that answer is an
// error for reads too: the client-side cached read is sent inside MULTI,
// and Redis refuses every command queued in MULTI while it is out of
// memory.
func TestLazyRedisErrorRepliesDoNotBypass(t *testing.T) {
	rd := redistest.StartWith(t, "--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
	l := NewLazyRedis(nil, redisconn.Option(config.Redis{Addrs: []string{rd.Addr}}), RedisOptions{}, time.Second, nil, nil)
	defer l.Close()
	ctx := context.Background()
	big := &Entry{Status: 200, Body: make([]byte, 256<<10)}
	var err error
	for i := 0; i < 40 && err == nil; i++ {
		err = l.Set(ctx, "big"+string(rune('a'+i)), big, time.Minute)
	}
	if err == nil || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("sets past maxmemory: %v, want OOM", err)
	}
	if l.Degraded() {
		t.Fatal("an OOM reply bypassed the level")
	}
	if _, _, err := l.Get(ctx, "biga"); err == nil || !strings.Contains(err.Error(), "OOM") || l.Degraded() {
		t.Fatalf("read under OOM: %v (degraded %v), want Redis' OOM reply, not bypassed", err, l.Degraded())
	}
}

// TestLazyRedisBypassesRefusedCredentials: Redis restarted with a password
// the gateway does not have refuses every reconnect (NOAUTH): an error
// reply, but one no call can get past, so the level bypasses it as it does
// a Redis that is down, rather than each request paying a reconnect.
func TestLazyRedisBypassesRefusedCredentials(t *testing.T) {
	rd := redistest.Start(t)
	l := NewLazyRedis(nil, redisconn.Option(config.Redis{Addrs: []string{rd.Addr}}), RedisOptions{}, time.Second, nil, nil)
	defer l.Close()
	ctx := context.Background()
	e := &Entry{Status: 200, Body: []byte("x")}
	if err := l.Set(ctx, "k", e, time.Minute); err != nil {
		t.Fatal(err)
	}
	rd.Stop()
	rd.RestartWith("--requirepass", "changed")
	for i := range BypassAfter {
		if _, _, err := l.Get(ctx, "fault"+strconv.Itoa(i)); err == nil || errors.Is(err, ErrBypassed) {
			t.Fatalf("call %d: %v, want the refusal", i, err)
		}
	}
	if _, _, err := l.Get(ctx, "k"); !errors.Is(err, ErrBypassed) || !l.Degraded() {
		t.Fatalf("after %d refusals: %v (degraded %v), want ErrBypassed", BypassAfter, err, l.Degraded())
	}
}

// TestLazyRedisLogsAValueThatIsNotAnEntry: garbage written under the
// cache's prefix (redis-cli, another program, a damaged value) is a miss,
// never a bypass, and is logged: once per LogEvery however many requests
// read it, with the count not logged. A fill then overwrites it. Before,
// it was only counted in sluice_cache_redis_errors_total{op="get"}.
func TestLazyRedisLogsAValueThatIsNotAnEntry(t *testing.T) {
	rd := redistest.Start(t)
	now := time.Unix(1000, 0)
	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	l := NewLazyRedis(nil, redisconn.Option(config.Redis{Addrs: []string{rd.Addr}}), RedisOptions{}, time.Second,
		func() time.Time { return now }, log)
	defer l.Close()
	ctx := context.Background()
	if _, err := rd.Do("SET", "sluice:cache:bad", "garbage-not-an-entry"); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if e, ok, err := l.Get(ctx, "bad"); ok || e != nil || err == nil {
			t.Fatalf("garbage read as %v %v %v, want a miss with an error", e, ok, err)
		}
	}
	if l.Degraded() {
		t.Fatal("a value that is not an entry bypassed Redis")
	}
	if n := strings.Count(logs.String(), "not a cache entry"); n != 1 {
		t.Fatalf("%d log lines for 10 reads, want 1:\n%s", n, logs.String())
	}
	now = now.Add(LogEvery)
	l.Get(ctx, "bad")
	if !strings.Contains(logs.String(), "not_logged_since_last=9") {
		t.Fatalf("second line does not count the 9 reads not logged:\n%s", logs.String())
	}
	if err := l.Set(ctx, "bad", &Entry{Status: 200, Body: []byte(`{"x":1}`)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	// Redis' invalidation of the client-side copy follows the SET reply.
	deadline := time.Now().Add(30 * time.Second)
	for {
		e, ok, err := l.Get(ctx, "bad")
		if ok && err == nil && string(e.Body) == `{"x":1}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the fill: %v %v %v", e, ok, err)
		}
	}
}
