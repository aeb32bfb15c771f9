package gateway

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/testutil/promtest"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// BenchmarkFreshWriteDuringRewrite measures how long a fresh owner write
// takes to land in a real Redis (from remember to the key readable) while
// the writer rewrites 100k held ids after Redis lost them (FLUSHALL).
// Each op is one such rewrite; the fresh writes are made one after
// another until it ends. Reported: the fresh writes' median and worst
// latency, and how many landed during the rewrite. Run with
// -benchtime=1x; a measure, not an assertion.
func BenchmarkFreshWriteDuringRewrite(b *testing.B) {
	const held = 100_000
	rd := redistest.Start(b)
	opt := &ResponseIDsRedis{Client: redisconn.Option(config.Redis{Addrs: []string{rd.Addr}}), Timeout: time.Second}
	reg := prometheus.NewRegistry()
	o := newRespOwners(reg, nil, held+10_000, time.Hour, time.Now, opt)
	defer o.close()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{rd.Addr}, DisableCache: true})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for { // the writer's first two checks are done, the map still empty
		k, _ := rd.Do("KEYS", defaultSharedPrefix+"live:*")
		v, _ := rd.Do("GET", k)
		if n, _ := strconv.Atoi(v); n >= 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range held {
		o.c.set(fmt.Sprintf("resp_held_%d", i), respOwner{backend: "b1", at: time.Now()})
	}
	rewritten := func() float64 { return promtest.Value(b, reg, "sluice_responses_ids_redis_writes_total", "rewritten") }
	var lat []time.Duration
	fresh := 0
	b.ResetTimer()
	for range b.N {
		// The writer's first check (at its start, the map still empty)
		// left its mark: Redis losing it now is a loss of 100k ids.
		base := rewritten()
		if _, err := rd.Do("FLUSHALL"); err != nil {
			b.Fatal(err)
		}
		for rewritten() == base { // the next check (within a second) starts the rewrite
			time.Sleep(time.Millisecond)
		}
		for rewritten() < base+held {
			id := fmt.Sprintf("resp_fresh_%d", fresh)
			fresh++
			start := time.Now()
			o.remember(id, respOwner{backend: "b2"})
			key := o.shared.key(id)
			for {
				if err := c.Do(ctx, c.B().Exists().Key(key).Build()).Error(); err != nil {
					b.Fatal(err)
				}
				if n, _ := c.Do(ctx, c.B().Exists().Key(key).Build()).AsInt64(); n == 1 {
					break
				}
				time.Sleep(200 * time.Microsecond)
			}
			lat = append(lat, time.Since(start))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no fresh write during the rewrite")
	}
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(len(lat))/float64(b.N), "fresh-writes/op")
}
