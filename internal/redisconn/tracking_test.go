package redisconn

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/testutil/promtest"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// trackedKeys is the number of keys the servers at addrs track for
// client-side caching (INFO stats tracking_total_keys, summed).
func trackedKeys(t *testing.T, servers ...*redistest.Server) int {
	t.Helper()
	n := 0
	for _, s := range servers {
		info, err := s.Do("INFO", "stats")
		if err != nil {
			t.Fatal(err)
		}
		_, rest, ok := strings.Cut(info, "tracking_total_keys:")
		if !ok {
			t.Fatalf("INFO stats of %s has no tracking_total_keys", s.Addr)
		}
		v, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0]))
		if err != nil {
			t.Fatal(err)
		}
		n += v
	}
	return n
}

// TestOneClientTracksOnlyCachedReads: the one client per Redis has
// client-side caching on for the cache's second level, and that costs its
// other users nothing: tracking is OPTIN, so the plain commands of the rate
// limits (a script reading and writing a bucket) and of the Responses ids
// (GET, SET) leave Redis tracking no key, on a single node and on a
// Cluster; a DoCache read is tracked, answered locally the second time,
// and re-read after another client changes the key.
func TestOneClientTracksOnlyCachedReads(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		rd := redistest.Start(t)
		checkTracking(t, rd.Addr, rd.Do, rd)
	})
	t.Run("cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t, 3)
		set := func(args ...string) (string, error) { // a plain client: follow the key to its node
			for _, s := range cl.Servers {
				if out, err := s.Do(args...); err == nil || !strings.Contains(err.Error(), "MOVED ") {
					return out, err
				}
			}
			return "", errors.New("no node took the key")
		}
		checkTracking(t, strings.Join(cl.Addrs, ","), set, cl.Servers...)
	})
}

func checkTracking(t *testing.T, addrs string, other func(args ...string) (string, error), servers ...*redistest.Server) {
	ctx := context.Background()
	client, err := dial(Option(config.Redis{Addrs: strings.Split(addrs, ",")}), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	script := rueidis.NewLuaScript(`local v = redis.call('INCRBY', KEYS[1], ARGV[1]); redis.call('PEXPIRE', KEYS[1], 60000); return v`)
	for i := range 20 {
		bucket, id := "sluice:rl:{b"+strconv.Itoa(i)+"}", "sluice:resp:"+strconv.Itoa(i)
		if err := script.Exec(ctx, client, []string{bucket}, []string{"1"}).Error(); err != nil {
			t.Fatal(err)
		}
		if err := client.Do(ctx, client.B().Set().Key(id).Value("owner").PxMilliseconds(60000).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		if v, err := client.Do(ctx, client.B().Get().Key(id).Build()).ToString(); err != nil || v != "owner" {
			t.Fatalf("GET %s: %q %v", id, v, err)
		}
	}
	if n := trackedKeys(t, servers...); n != 0 {
		t.Fatalf("Redis tracks %d keys after plain commands only, want 0 (OPTIN)", n)
	}

	key := "sluice:cache:k"
	if err := client.Do(ctx, client.B().Set().Key(key).Value("v1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	read := func() rueidis.RedisResult {
		return client.DoCache(ctx, client.B().Get().Key(key).Cache(), time.Minute)
	}
	if v, err := read().ToString(); err != nil || v != "v1" {
		t.Fatalf("cached read: %q %v", v, err)
	}
	if n := trackedKeys(t, servers...); n != 1 {
		t.Fatalf("Redis tracks %d keys after one cached read, want 1", n)
	}
	if r := read(); !r.IsCacheHit() {
		t.Fatal("second cached read went to Redis")
	}
	if _, err := other("SET", key, "v2"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second) // the invalidation is pushed; rueidis reads it asynchronously
	for {
		v, err := read().ToString()
		if err != nil {
			t.Fatal(err)
		}
		if v == "v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a key changed by another client still read from the client-side cache")
		}
	}
}

// TestDialWithoutRESP3: a Redis that speaks RESP2 only (HELLO unknown, as
// before Redis 6) refuses a client with client-side caching
// (rueidis.ErrNoCache: the cache's second level never connected to one);
// dial then makes the client without it, so the rate limits and the
// Responses ids work there as before, and the cache's cached reads each go
// to Redis.
func TestDialWithoutRESP3(t *testing.T) {
	rd := redistest.StartWith(t, "--rename-command", "HELLO", "")
	opt := Option(config.Redis{Addrs: []string{rd.Addr}})
	if c, err := rueidis.NewClient(opt); !errors.Is(err, rueidis.ErrNoCache) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("a client-side caching client on RESP2: %v, want ErrNoCache", err)
	}
	clients := NewClients(nil, nil)
	l := NewSharedLazy(clients, opt, func(c rueidis.Client) *rueidis.Client { return &c }, 0, nil)
	defer l.Close()
	cp, err := l.Get()
	if err != nil {
		t.Fatalf("the shared client on RESP2: %v", err)
	}
	client, ctx := *cp, context.Background()
	if err := client.Do(ctx, client.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := client.DoCache(ctx, client.B().Get().Key("k").Cache(), time.Minute)
		if v, err := r.ToString(); err != nil || v != "v" || r.IsCacheHit() {
			t.Fatalf("cached read on RESP2: %q %v (local %v), want a round trip", v, err, r.IsCacheHit())
		}
	}
	if names := redistest.ClientNames(t, rd.Addr); len(names) != 1 || names[SharedName] == 0 {
		t.Fatalf("connections by name: %v", names)
	}
}

// TestRedisReplacedWithoutRESP3: the Redis under a running client is
// replaced by one without RESP3 (HELLO renamed away, as before Redis 6).
// rueidis' reconnects then fail with ErrNoCache for a client with
// client-side caching; the shared client replaces itself with one without
// it, so the users' calls work again without a restart, and the cache's
// reads each go to Redis.
func TestRedisReplacedWithoutRESP3(t *testing.T) {
	rd := redistest.Start(t)
	reg := prometheus.NewRegistry()
	clients := NewClients(nil, reg)
	l := NewSharedLazy(clients, Option(config.Redis{Addrs: []string{rd.Addr}}), func(c rueidis.Client) *rueidis.Client { return &c }, 0, nil)
	cp, err := l.Get()
	if err != nil {
		t.Fatal(err)
	}
	client := *cp
	set := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return client.Do(ctx, client.B().Set().Key("k").Value("v").Build()).Error()
	}
	if err := set(); err != nil {
		t.Fatal(err)
	}
	sc, ok := client.(*swapClient)
	if !ok || !sc.cached() {
		t.Fatalf("the shared client is %T (cached %v), want a swapClient with client-side caching", client, ok && sc.cached())
	}
	rd.Stop()
	rd.RestartWith("--rename-command", "HELLO", "")

	var last error
	deadline := time.Now().Add(15 * time.Second) // a generous bound; it takes a few reconnects
	for last = set(); last != nil && time.Now().Before(deadline); last = set() {
		time.Sleep(20 * time.Millisecond) // polling a reconnect that happens in the background
	}
	if last != nil {
		t.Fatalf("calls still fail after Redis was replaced by one without RESP3: %v", last)
	}
	if sc.cached() {
		t.Fatal("the client still has client-side caching after the swap")
	}
	if n := promtest.Value(t, reg, "sluice_redis_resp2_swaps_total", "swapped"); n != 1 {
		t.Fatalf("sluice_redis_resp2_swaps_total{result=swapped} = %v, want 1", n)
	}
	for range 2 {
		r := client.DoCache(context.Background(), client.B().Get().Key("k").Cache(), time.Minute)
		if v, err := r.ToString(); err != nil || v != "v" || r.IsCacheHit() {
			t.Fatalf("cached read on RESP2: %q %v (local %v), want a round trip", v, err, r.IsCacheHit())
		}
	}
	if names := redistest.ClientNames(t, rd.Addr); len(names) != 1 || names[SharedName] == 0 {
		t.Fatalf("connections by name: %v", names)
	}
	l.Close()
	if clients.Open() != 0 {
		t.Fatal("client left open")
	}
	if names := redistest.ClientNames(t, rd.Addr); len(names) != 0 {
		t.Fatalf("connections left after Close: %v", names)
	}
}
