package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/testutil/promtest"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// A master of a Redis Cluster killed (kill -9): the Responses ids whose
// keys live on it are unknown for a while (a 503 to a follow-up), the
// others are still found. Before, one bypass for the whole Redis made
// every id unknown while the master was away.
func TestSharedIDsClusterMasterDownOnlyItsIDs(t *testing.T) {
	cl := redistest.StartCluster(t, 3, "--cluster-require-full-coverage", "no")
	start := time.Now()
	var offset atomic.Int64 // the test's clock: back-offs pass when it moves
	now := func() time.Time { return start.Add(time.Duration(offset.Load())) }
	opt := ResponseIDsRedis{Client: redisconn.Option(config.Redis{Addrs: cl.Addrs}), Timeout: 2 * time.Second}
	s := newSharedOwners(prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), opt, 1000, time.Hour, now,
		func() []sharedWrite { return nil })
	defer s.close()

	ids := make([]string, 30)
	for i := range ids {
		ids[i] = fmt.Sprintf("resp_cluster_%d", i)
		s.set(ids[i], respOwner{backend: "b1", at: now()})
	}
	ctx := context.Background()
	waitFor(t, func() bool {
		offset.Add(int64(time.Second)) // past a bypass of lookups made before the connection
		for _, id := range ids {
			if _, ok, _ := s.get(ctx, id); !ok {
				return false
			}
		}
		return true
	})
	onVictim, onOthers := cl.KillFirstMaster(t, ids, s.key)

	// Rounds as in ratelimit.TestClusterMasterDownRefusesOnlyItsKeys: the
	// victim's ids first, the clock past any back-off between rounds.
	redistest.AwaitRound(t, "no round found the live masters' ids alone", func() (bool, string) {
		offset.Add(int64(15 * time.Second))
		unknown, found := 0, 0
		for _, id := range onVictim {
			if _, _, err := s.get(ctx, id); err != nil {
				unknown++
			}
		}
		for _, id := range onOthers {
			if _, ok, err := s.get(ctx, id); ok && err == nil {
				found++
			}
		}
		return unknown == len(onVictim) && found == len(onOthers), fmt.Sprintf("%d/%d of the victim's ids unavailable, %d/%d of the others found",
			unknown, len(onVictim), found, len(onOthers))
	})
}

// A master of a Redis Cluster killed while this replica writes ids: the
// writes to it are held (more than a replay's round trip takes), and the
// ids made after them whose keys live on the other masters still reach
// Redis at once. Before, the held writes were replayed in one queue,
// oldest first: the dead master's stood in front and every newer write
// was held behind them until it came back.
func TestHeldWritesOfADeadMasterHoldNoOthers(t *testing.T) {
	cl := redistest.StartCluster(t, 3, "--cluster-require-full-coverage", "no")
	start := time.Now()
	var offset atomic.Int64 // the test's clock: moved only while warming up (nothing held expires)
	now := func() time.Time { return start.Add(time.Duration(offset.Load())) }
	opt := ResponseIDsRedis{Client: redisconn.Option(config.Redis{Addrs: cl.Addrs}), Timeout: 2 * time.Second}
	s := newSharedOwners(prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), opt, 10000, 24*time.Hour, now,
		func() []sharedWrite { return nil })
	defer s.close()

	ctx := context.Background()
	conn := warmUpSharedOwners(t, s, now, &offset)

	victim := cl.Servers[0]
	var onVictim, onOthers []string
	for i := 0; len(onVictim) < 3*sharedBatch || len(onOthers) < 20; i++ {
		id := fmt.Sprintf("resp_held_%d", i)
		switch m := s.bypass.Master(conn.c, s.key(id)); {
		case m == victim.Addr && len(onVictim) < 3*sharedBatch:
			onVictim = append(onVictim, id)
		case m != victim.Addr && m != "" && len(onOthers) < 20:
			onOthers = append(onOthers, id)
		}
	}
	victim.Stop()

	for _, id := range onVictim {
		s.set(id, respOwner{backend: "b1", at: now()})
	}
	waitFor(t, func() bool { return s.held.n.Load() == int64(len(onVictim)) })
	for _, id := range onOthers {
		s.set(id, respOwner{backend: "b2", at: now()})
	}
	waitFor(t, func() bool {
		for _, id := range onOthers {
			if o, ok, err := s.get(ctx, id); !ok || err != nil || o.backend != "b2" {
				return false
			}
		}
		return true
	})
	if n := s.held.n.Load(); n != int64(len(onVictim)) {
		t.Fatalf("%d writes held, want the dead master's %d", n, len(onVictim))
	}
}

// A Redis Cluster master down while this replica writes again the ids
// Redis lost (its mark gone): the rewrite goes past the dead master's
// chunks, the live masters' ids are written, and what could not be is
// counted writes_total{result="rewrite_failed"} and owed. Before, the
// first chunk that failed ended the rewrite and each check started over
// at the same chunk: with the dead master's ids first, no live master's
// id was ever written again.
func TestRewriteGoesPastADeadMastersChunks(t *testing.T) {
	cl := redistest.StartCluster(t, 3, "--cluster-require-full-coverage", "no")
	start := time.Now()
	var offset atomic.Int64 // the test's clock: moved only while warming up
	now := func() time.Time { return start.Add(time.Duration(offset.Load())) }
	var armed atomic.Bool
	var held []sharedWrite // set before armed, read by the writer after
	reg := prometheus.NewRegistry()
	opt := ResponseIDsRedis{Client: redisconn.Option(config.Redis{Addrs: cl.Addrs}), Timeout: 2 * time.Second}
	s := newSharedOwners(reg, slog.New(slog.NewTextHandler(io.Discard, nil)), opt, 10000, 24*time.Hour, now,
		func() []sharedWrite {
			if !armed.Load() {
				return nil
			}
			return held
		})
	defer s.close()

	conn := warmUpSharedOwners(t, s, now, &offset)

	// The victim is a master that does not serve the mark (its check must
	// still see the loss).
	markMaster := s.bypass.Master(conn.c, s.mark.key)
	byAddr := map[string]*redistest.Server{}
	var victim *redistest.Server
	for _, srv := range cl.Servers {
		byAddr[srv.Addr] = srv
		if victim == nil && srv.Addr != markMaster {
			victim = srv
		}
	}
	if byAddr[markMaster] == nil {
		t.Fatalf("the mark's master %q is none of the cluster's %v", markMaster, cl.Addrs)
	}
	var onVictim, onOthers []sharedWrite
	for i := 0; len(onVictim) < 2*sharedBatch || len(onOthers) < 3*sharedBatch; i++ {
		w := s.write1(fmt.Sprintf("resp_rw_%d", i), respOwner{backend: "b1", at: now()})
		switch m := s.bypass.Master(conn.c, w.key); {
		case m == victim.Addr && len(onVictim) < 2*sharedBatch:
			onVictim = append(onVictim, w)
		case m != victim.Addr && m != "" && len(onOthers) < 3*sharedBatch:
			onOthers = append(onOthers, w)
		}
	}
	held = append(onVictim, onOthers...) // the dead master's chunks first
	victim.Stop()
	armed.Store(true)
	if _, err := byAddr[markMaster].Do("DEL", s.mark.key); err != nil { // Redis lost this replica's writes
		t.Fatal(err)
	}

	written := func() float64 {
		return promtest.Value(t, reg, "sluice_responses_ids_redis_writes_total", "rewritten")
	}
	waitFor(t, func() bool { return written() >= float64(len(onOthers)) })
	for _, w := range onOthers {
		if v, err := byAddr[s.bypass.Master(conn.c, w.key)].Do("EXISTS", w.key); err != nil || v != "1" {
			t.Fatalf("a live master's id not written again: EXISTS %s = %q (%v)", w.key, v, err)
		}
	}
	// Owed: each check tries the dead master's ids again (turned away by
	// its bypass), not counted again. Two more checks waited for by the
	// mark's number.
	mark := func() int {
		v, _ := byAddr[markMaster].Do("GET", s.mark.key)
		n, _ := strconv.Atoi(v)
		return n
	}
	from := mark()
	waitFor(t, func() bool { return mark() >= from+2 })
	if n := promtest.Value(t, reg, "sluice_responses_ids_redis_writes_total", "rewrite_failed"); n != float64(len(onVictim)) {
		t.Fatalf("rewrite_failed %v, want the dead master's %d, counted once", n, len(onVictim))
	}
}

// warmUpSharedOwners waits until s reads back an id it set and knows the
// cluster's slot map, moving the test's clock (offset, read by now) a
// second a try, past a bypass of lookups made before the connection.
// It returns the connection.
func warmUpSharedOwners(t *testing.T, s *sharedOwners, now func() time.Time, offset *atomic.Int64) *sharedConn {
	t.Helper()
	s.set("resp_warm", respOwner{backend: "b1", at: now()})
	waitFor(t, func() bool {
		offset.Add(int64(time.Second))
		_, ok, _ := s.get(context.Background(), "resp_warm")
		return ok
	})
	conn := s.conn.Loaded()
	waitFor(t, func() bool { return s.bypass.Master(conn.c, s.key("resp_warm")) != "" })
	return conn
}
