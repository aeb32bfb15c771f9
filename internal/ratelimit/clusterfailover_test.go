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
