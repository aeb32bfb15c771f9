package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// A master of a Redis Cluster killed (kill -9) under fail-closed limits:
// only the tenants whose buckets live on it are refused; those on the
// other two masters are served. Before, one bypass for the whole Redis
// refused every tenant while the master was away.
func TestClusterMasterDownRefusesOnlyItsKeys(t *testing.T) {
	// Without full coverage the live masters keep serving their slots
	// while one is down (with it, and without a replica to promote, every
	// master would answer CLUSTERDOWN: the whole Redis down).
	cl := redistest.StartCluster(t, 3, "--cluster-require-full-coverage", "no")
	lim, err := Open(config.RateLimits{
		Store: "redis",
		Redis: config.RateLimitRedis{Redis: config.Redis{Addrs: cl.Addrs, KeyPrefix: "t:",
			Timeout: config.Duration(2 * time.Second)}, FailureMode: "closed"},
		PerTenant: config.RateRule{Requests: ptr(mustParse(t, "rate=1000r/s burst=1000 nodelay"))},
	}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(&logBuf{}, nil)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()

	// The clock is the test's: a bypass' back-off passes only when the
	// test moves it, however slow the machine.
	now := time.Unix(1_700_000_000, 0)
	tenants := make([]string, 30)
	for i := range tenants {
		tenants[i] = fmt.Sprintf("tenant-%d", i)
		if _, err := lim.Check(context.Background(), Subject{Tenant: tenants[i]}, 0, now); err != nil {
			t.Fatalf("%s before the kill: %v", tenants[i], err)
		}
	}
	store := RedisStore{prefix: "t:"}
	onVictim, onOthers := cl.KillFirstMaster(t, tenants, func(tn string) string { return store.Key("req:tenant:" + tn) })

	// Rounds of checks, the victim's tenants first (their failures in a
	// row are what started the whole-Redis bypass), the clock moved past
	// any back-off between rounds. The map of slots is learned in the
	// background: a round may find it unknown yet, so the assertion is
	// that a round comes where the others are all served and the victim's
	// all refused; the old design never gets there.
	redistest.AwaitRound(t, "no round served the live masters' tenants alone", func() (bool, string) {
		now = now.Add(15 * time.Second)
		refused, servedElsewhere := 0, 0
		for _, tn := range onVictim {
			now = now.Add(time.Millisecond)
			if _, err := lim.Check(context.Background(), Subject{Tenant: tn}, 0, now); errors.Is(err, ErrStoreUnavailable) {
				refused++
			}
		}
		for _, tn := range onOthers {
			now = now.Add(time.Millisecond)
			res, err := lim.Check(context.Background(), Subject{Tenant: tn}, 0, now)
			if err == nil && res.Allowed {
				servedElsewhere++
			}
		}
		return refused == len(onVictim) && servedElsewhere == len(onOthers), fmt.Sprintf("%d/%d of the victim's tenants refused, %d/%d of the others served",
			refused, len(onVictim), servedElsewhere, len(onOthers))
	})
}

// A check whose buckets (the tenant's and the API key's) live on two
// masters of a Redis Cluster, one master killed, fail-closed: a request
// whose buckets are all on live masters is still served, one with a
// bucket on the dead master refused. Before, such a check was decided by
// the whole-Redis bypass, and its failures on the dead master bypassed
// the whole Redis: every request refused.
func TestClusterMasterDownSpanningChecks(t *testing.T) {
	cl := redistest.StartCluster(t, 3, "--cluster-require-full-coverage", "no")
	lim, err := Open(config.RateLimits{
		Store: "redis",
		Redis: config.RateLimitRedis{Redis: config.Redis{Addrs: cl.Addrs, KeyPrefix: "t:",
			Timeout: config.Duration(2 * time.Second)}, FailureMode: "closed"},
		PerTenant: config.RateRule{Requests: ptr(mustParse(t, "rate=1000r/s burst=1000 nodelay"))},
		PerKey:    config.RateRule{Requests: ptr(mustParse(t, "rate=1000r/s burst=1000 nodelay"))},
	}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(&logBuf{}, nil)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()

	now := time.Unix(1_700_000_000, 0)
	subjects := make([]Subject, 60)
	for i := range subjects {
		subjects[i] = Subject{Tenant: fmt.Sprintf("tenant-%d", i), Key: fmt.Sprintf("sk-%d", i)}
		if _, err := lim.Check(context.Background(), subjects[i], 0, now); err != nil {
			t.Fatalf("%v before the kill: %v", subjects[i], err)
		}
	}
	masterOf := bucketMaster(t, cl)
	const victim = 0
	var live, onVictim []Subject // live: buckets on two masters, neither the victim
	for _, s := range subjects {
		tm, km := masterOf("req:tenant:"+s.Tenant), masterOf("req:key:"+hashKey(s.Key))
		switch {
		case tm == victim || km == victim:
			onVictim = append(onVictim, s)
		case tm != km:
			live = append(live, s)
		}
	}
	if len(live) == 0 || len(onVictim) == 0 {
		t.Fatalf("spanning subjects on live masters %d, with a bucket on the victim %d: want both", len(live), len(onVictim))
	}
	cl.Servers[victim].Stop()

	// Rounds as in TestClusterMasterDownRefusesOnlyItsKeys: the victim's
	// subjects first, the clock past any back-off between rounds.
	var last string
	for round := range 40 {
		now = now.Add(15 * time.Second)
		refused, served := 0, 0
		for _, s := range onVictim {
			now = now.Add(time.Millisecond)
			if _, err := lim.Check(context.Background(), s, 0, now); errors.Is(err, ErrStoreUnavailable) {
				refused++
			}
		}
		for _, s := range live {
			now = now.Add(time.Millisecond)
			if res, err := lim.Check(context.Background(), s, 0, now); err == nil && res.Allowed {
				served++
			}
		}
		if refused == len(onVictim) && served == len(live) {
			return
		}
		last = fmt.Sprintf("round %d: %d/%d with a bucket on the victim refused, %d/%d on live masters served",
			round, refused, len(onVictim), served, len(live))
		time.Sleep(50 * time.Millisecond) // leave the background map refresh a moment; not a synchronisation
	}
	t.Fatalf("no round served the live masters' checks alone; last %s", last)
}

// bucketMaster is the index of the master serving a bucket's slot: the
// one that answers for its key (the others answer MOVED).
func bucketMaster(t *testing.T, cl *redistest.Cluster) func(bucket string) int {
	store := RedisStore{prefix: "t:"}
	return func(bucket string) int {
		for i, s := range cl.Servers {
			if _, err := s.Do("EXISTS", store.Key(bucket)); err == nil {
				return i
			}
		}
		t.Fatalf("bucket %q on no master", bucket)
		return -1
	}
}

// Fail-closed, a check refused because its API key's bucket is on the
// dead master gives back what it took from its tenant's bucket on a live
// master: the tenant's other keys still have its whole burst.
func TestClusterMasterDownRefusalGivesBack(t *testing.T) {
	cl := redistest.StartCluster(t, 3, "--cluster-require-full-coverage", "no")
	lim, err := Open(config.RateLimits{
		Store: "redis",
		Redis: config.RateLimitRedis{Redis: config.Redis{Addrs: cl.Addrs, KeyPrefix: "t:",
			Timeout: config.Duration(2 * time.Second)}, FailureMode: "closed"},
		PerTenant: config.RateRule{Requests: ptr(mustParse(t, "rate=1r/m burst=3 nodelay"))},
		PerKey:    config.RateRule{Requests: ptr(mustParse(t, "rate=1000r/s burst=1000 nodelay"))},
	}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(&logBuf{}, nil)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	masterOf := bucketMaster(t, cl)
	const victim = 0
	tenant := ""
	for i := 0; tenant == ""; i++ {
		if tn := fmt.Sprintf("tenant-%d", i); masterOf("req:tenant:"+tn) != victim {
			tenant = tn
		}
	}
	var dead, live string // API keys: one on the victim, one on the third master
	for i := 0; dead == "" || live == ""; i++ {
		k := fmt.Sprintf("sk-%d", i)
		switch m := masterOf("req:key:" + hashKey(k)); {
		case m == victim:
			dead = k
		case m != masterOf("req:tenant:"+tenant):
			live = k
		}
	}
	now := time.Unix(1_700_000_000, 0)
	waitSlotMap(t, lim, now)
	cl.Servers[victim].Stop()

	for i := range 10 {
		now = now.Add(time.Millisecond)
		if _, err := lim.Check(context.Background(), Subject{Tenant: tenant, Key: dead}, 0, now); !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("check %d with the key on the dead master: %v, want refused (fail-closed)", i, err)
		}
	}
	for i := range 3 {
		now = now.Add(time.Millisecond)
		res, err := lim.Check(context.Background(), Subject{Tenant: tenant, Key: live}, 0, now)
		if err != nil || !res.Allowed {
			t.Fatalf("check %d of the tenant's burst of 3 with a live key: allowed %v, %v (its bucket drained by refusals)", i, res.Allowed, err)
		}
	}
}

// Fail-open, a check whose API key's bucket is on the dead master and its
// tenant's on a live one: the key's bucket is metered here (this
// replica's share), the tenant's is still Redis' whole bucket, shared by
// every replica. Before, the check fell back whole: the tenant metered
// here at a third of its burst.
func TestClusterMasterDownFailOpenKeepsLiveBuckets(t *testing.T) {
	cl := redistest.StartCluster(t, 3, "--cluster-require-full-coverage", "no")
	lim, err := Open(config.RateLimits{
		Store: "redis",
		Redis: config.RateLimitRedis{Redis: config.Redis{Addrs: cl.Addrs, KeyPrefix: "t:",
			Timeout: config.Duration(2 * time.Second)}, FailureMode: "open", Replicas: 3},
		PerTenant: config.RateRule{Requests: ptr(mustParse(t, "rate=1r/m burst=3 nodelay"))},
		PerKey:    config.RateRule{Requests: ptr(mustParse(t, "rate=1000r/s burst=1000 nodelay"))},
	}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(&logBuf{}, nil)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	masterOf := bucketMaster(t, cl)
	const victim = 0
	tenant, dead := "", ""
	for i := 0; tenant == ""; i++ {
		if tn := fmt.Sprintf("tenant-%d", i); masterOf("req:tenant:"+tn) != victim {
			tenant = tn
		}
	}
	for i := 0; dead == ""; i++ {
		if k := fmt.Sprintf("sk-%d", i); masterOf("req:key:"+hashKey(k)) == victim {
			dead = k
		}
	}
	now := time.Unix(1_700_000_000, 0)
	waitSlotMap(t, lim, now)
	cl.Servers[victim].Stop()

	allowed := 0
	for range 5 {
		now = now.Add(time.Millisecond)
		res, err := lim.Check(context.Background(), Subject{Tenant: tenant, Key: dead}, 0, now)
		if err != nil {
			t.Fatalf("fail-open check: %v", err)
		}
		if res.Allowed {
			allowed++
		}
	}
	if want := mustParse(t, "rate=1r/m burst=3 nodelay").Capacity(); int64(allowed) != want {
		t.Fatalf("%d of 5 allowed, want the tenant's bucket in Redis: %d", allowed, want)
	}
}

// waitSlotMap checks an idle tenant until lim's store knows the Cluster's
// slot map (learned in the background after a first call): a check spans
// masters only once it is known.
func waitSlotMap(t *testing.T, lim *Limiter, now time.Time) {
	t.Helper()
	fs := lim.store.(*FailoverStore)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := lim.Check(context.Background(), Subject{Tenant: "warm"}, 0, now); err != nil {
			t.Fatal(err)
		}
		if client, _ := fs.opt.Route(nil); client != nil && fs.bypass.Master(client, "x") != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no slot map within 30s")
		}
	}
}
