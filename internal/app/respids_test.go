package app

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/ratelimit"
	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// TestResponseIDsRedis: the ids go to the rate limits' Redis when the
// limits use one (with the limits' client options, so the two share one
// client), else the cache's, else nowhere; under the section's prefix,
// with its timeout.
func TestResponseIDsRedis(t *testing.T) {
	cfg := config.Default()
	clients := redisconn.NewClients()
	if r := responseIDsRedis(&cfg, clients); r != nil {
		t.Fatalf("no Redis configured: %+v", r)
	}
	cfg.Cache.Redis.Addrs = []string{"cache:6379"}
	cfg.Cache.Redis.Timeout = config.Duration(30 * time.Millisecond)
	if r := responseIDsRedis(&cfg, clients); r == nil || r.Client.InitAddress[0] != "cache:6379" || r.Prefix != "" || r.Timeout != 30*time.Millisecond {
		t.Fatalf("cache only: %+v", r)
	}
	cfg.RateLimits.Redis.Addrs = []string{"rl:6379"} // not the store yet
	if r := responseIDsRedis(&cfg, clients); r == nil || r.Client.InitAddress[0] != "cache:6379" {
		t.Fatalf("rate limits local: %+v", r)
	}
	cfg.RateLimits.Store = "redis"
	cfg.RateLimits.Redis.KeyPrefix = "prod:"
	if r := responseIDsRedis(&cfg, clients); r == nil || r.Client.InitAddress[0] != "rl:6379" || r.Prefix != "prod:resp:" || r.Clients != clients ||
		!reflect.DeepEqual(r.Client, ratelimit.ClientOption(cfg.RateLimits.Redis.Redis)) {
		t.Fatalf("rate limits on Redis: %+v", r)
	}
}

// TestRateLimitsAndResponseIDsShareOneRedisClient: with the rate limits on
// Redis, the limiter and the Responses ids' writer hold one client (one
// set of connections, named sluice), and a reload that replaces the
// limiter keeps it: the new limiter takes it before the old one lets go.
// Before, each had a client of its own: two connections per node.
func TestRateLimitsAndResponseIDsShareOneRedisClient(t *testing.T) {
	rd := redistest.Start(t)
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(rate string) {
		src := "listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n" +
			"rate_limits: {store: redis, redis: {addrs: ['" + rd.Addr + "']}, global: {requests: '" + rate + "'}}\n" +
			"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("rate=1000r/s burst=1000")
	a := newApp(t, path)
	t.Cleanup(a.release)
	clients := a.deps.Redis
	eventually(t, "the limiter and the ids' writer to hold the client", func() bool { return clients.Holders() == 2 })
	if clients.Open() != 1 {
		t.Fatalf("%d Redis clients open, want 1 shared", clients.Open())
	}
	if names := redistest.ClientNames(t, rd.Addr); len(names) != 1 || names[redisconn.SharedName] == 0 {
		t.Fatalf("connections to Redis by name: %v, want %s only", names, redisconn.SharedName)
	}
	limiter := a.built.limits
	write("rate=2000r/s burst=1000")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if a.built.limits == limiter {
		t.Fatal("a changed limit kept the old limiter")
	}
	if clients.Open() != 1 || clients.Holders() != 2 {
		t.Fatalf("after the reload: %d clients, %d holders; want the one client, held by the new limiter and the writer",
			clients.Open(), clients.Holders())
	}
	a.release()
	if clients.Open() != 0 {
		t.Fatalf("%d Redis clients open after shutdown", clients.Open())
	}
}
