package ratelimit

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// benchKeys spreads the benchmark over many keys, as real traffic is.
var benchKeys = func() []string {
	k := make([]string, 1024)
	for i := range k {
		k[i] = "key-" + strconv.Itoa(i)
	}
	return k
}()

func benchTake(b *testing.B, s Store, parallelism int) {
	l := mustParse(b, "rate=1000r/s burst=2000 nodelay")
	ctx := context.Background()
	now := time.Now()
	var n atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := s.Take(ctx, benchKeys[i%uint64(len(benchKeys))], l, 1, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkLocalStoreTake(b *testing.B) { benchTake(b, NewLocalStore(0), 1) }

// 16 callers per CPU share one rueidis client, which pipelines their
// commands: ns/op is throughput, not the latency of one round trip.
func BenchmarkRedisStoreTake(b *testing.B) {
	srv := redistest.Start(b)
	benchTake(b, NewRedisStore(newClient(b, srv.Addr), RedisOptions{}), 16)
}

// One caller at a time: the latency of one EVALSHA round trip.
func BenchmarkRedisStoreTakeSerial(b *testing.B) {
	srv := redistest.Start(b)
	s := NewRedisStore(newClient(b, srv.Addr), RedisOptions{})
	l := mustParse(b, "rate=1000r/s burst=2000 nodelay")
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Take(ctx, benchKeys[i%len(benchKeys)], l, 1, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// A full Check with key, IP and global request limits and a token limit:
// five buckets.
func BenchmarkLimiterCheckLocal(b *testing.B) {
	lim, err := NewLimiter(NewLocalStore(0), Rules{
		Global: Rule{Requests: mustParse(b, "rate=100000r/s burst=100000 nodelay")},
		PerKey: Rule{Requests: mustParse(b, "rate=1000r/s burst=2000 nodelay"), TokensPerMinute: 1 << 30},
		PerIP:  Rule{Requests: mustParse(b, "rate=1000r/s burst=2000 nodelay")},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := benchKeys[i%len(benchKeys)]
		if _, err := lim.Check(ctx, Subject{Key: k, IP: k}, 100, now); err != nil {
			b.Fatal(err)
		}
	}
}
