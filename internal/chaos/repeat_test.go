package chaos

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRepeatedOutages tells a leak from a one-off change of state: it runs
// one gateway through the same Redis or NATS outage several times, under
// the well-behaved client's load, and checks after each round that the
// gateway's goroutines and fds (as the leak target counts them) are back
// within 5% of the first baseline. Something that grows with every outage
// fails here even when a single round stays under 5%.
//
// It needs a built gateway and the daemons, and takes about 15 s a round:
//
//	go build -o /tmp/sluice ./cmd/sluice
//	SLUICE_CHAOS_EXE=/tmp/sluice go test -run TestRepeatedOutages -v ./internal/chaos/
//
// SLUICE_CHAOS_ROUNDS sets the rounds (default 5).
func TestRepeatedOutages(t *testing.T) {
	exe := os.Getenv("SLUICE_CHAOS_EXE")
	if exe == "" || testing.Short() {
		t.Skip("set SLUICE_CHAOS_EXE to a built sluice binary")
	}
	rounds := 5
	if n, err := strconv.Atoi(os.Getenv("SLUICE_CHAOS_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	raiseFDLimit()
	for _, tc := range []struct {
		name   string
		setup  func(context.Context, *env) (gatewaySpec, func(), string, error)
		outage func(t *testing.T, ctx context.Context, e *env)
	}{
		{"redis-restart", setupRedis, restartDaemon},
		{"redis-cluster", setupRedisCluster, failoverAndRejoin},
		{"nats-restart", setupNATS, restartDaemon},
	} {
		t.Run(tc.name, func(t *testing.T) { repeatOutage(t, exe, rounds, tc.setup, tc.outage) })
	}
}

func repeatOutage(t *testing.T, exe string, rounds int,
	setup func(context.Context, *env) (gatewaySpec, func(), string, error),
	outage func(t *testing.T, ctx context.Context, e *env)) {
	ctx := context.Background()
	opt := Options{Exe: exe, Quick: true}
	opt.defaults()
	perServer, _ := simConfig.Capacity(promptTokens, outputTokens)
	rn := &runner{opt: opt, capacity: perServer * float64(opt.Backends)}
	p, err := startPool(opt.Backends, simConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	dir := t.TempDir()
	e := &env{opt: opt, dir: dir, pool: p, capacity: rn.capacity,
		wbLoad: load{PromptTokens: promptTokens, OutputTokens: outputTokens, Rate: rn.capacity / 2, Timeout: 30 * time.Second}}
	spec, cleanup, skip, err := setup(ctx, e)
	if cleanup != nil {
		defer cleanup()
	}
	if skip != "" {
		t.Skip(skip)
	}
	if err != nil {
		t.Fatal(err)
	}
	gw, err := newGateway(exe, dir, p.urls, spec)
	if err != nil {
		t.Fatal(err)
	}
	e.gw = gw
	if err := gw.start(ctx); err != nil {
		t.Fatal(err)
	}
	defer gw.stop()
	wb := newWellBehaved(gw.url(), e.wbLoad)
	loadFor := func(d time.Duration) {
		c, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		wb.run(c, &tally{})
	}
	loadFor(3 * time.Second)
	if err := rn.quiesce(ctx, e); err != nil {
		t.Fatal(err)
	}
	base, err := gw.proc().sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("baseline: %s", describe(base))
	for i := 1; i <= rounds; i++ {
		done := make(chan struct{})
		go func() { defer close(done); loadFor(6 * time.Second) }()
		outage(t, ctx, e)
		<-done
		rn.quiesce(ctx, e)
		after := rn.settle(ctx, e, base)
		t.Logf("after outage %d: %s", i, describe(after))
		if !within(base.FDs, after.FDs) || !within(base.Goroutines, after.Goroutines) {
			t.Errorf("outage %d: fds %d -> %d, goroutines %d -> %d; sockets: %s; other fds: %s", i,
				base.FDs, after.FDs, base.Goroutines, after.Goroutines,
				peerGrowth(base.FDAccount.Peers, after.FDAccount.Peers, e.names()),
				countGrowth(base.FDAccount.Files, after.FDAccount.Files))
		}
		if !gw.alive() {
			t.Fatalf("gateway died: %s", gw.logTail())
		}
	}
}

func describe(u usage) string {
	a := u.FDAccount
	return fmt.Sprintf("fds %d counted (%d open: %d backend pool, %d Redis, %d observer), goroutines %d",
		u.FDs, a.Total, a.Pooled, a.Store, a.Observer, u.Goroutines)
}

// restartDaemon kills the scenario's Redis or NATS a second into the load
// and starts it again on the same address 1.5 s later.
func restartDaemon(t *testing.T, ctx context.Context, e *env) {
	time.Sleep(time.Second) // into the load, which runs on its own clock
	e.daemon.kill()
	time.Sleep(1500 * time.Millisecond)
	if err := e.daemon.start(ctx); err != nil {
		t.Fatal(err)
	}
}

// failoverAndRejoin kills a Cluster master, waits for its replica's
// promotion, then restarts the dead node (it rejoins as a replica), so the
// next round can kill another master.
func failoverAndRejoin(t *testing.T, ctx context.Context, e *env) {
	c := e.cluster
	var victim *daemon
	for _, n := range c.nodes {
		if out, err := c.info(ctx, n.addr, "role"); err == nil && strings.HasPrefix(strings.TrimSpace(out), "master") {
			victim = n
			break
		}
	}
	if victim == nil {
		t.Fatal("no master in the cluster")
	}
	time.Sleep(500 * time.Millisecond)
	victim.kill()
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := c.waitFailover(fctx, victim.addr); err != nil {
		var views []string
		for _, n := range c.nodes {
			if n != victim {
				out, _ := c.info(ctx, n.addr, "cluster", "nodes")
				views = append(views, n.addr+":\n"+out)
			}
		}
		t.Fatalf("no failover after killing %s: %v\n%s", victim.addr, err, strings.Join(views, "\n"))
	}
	if err := victim.start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.waitOK(ctx, 20*time.Second, ""); err != nil {
		t.Fatal(err)
	}
	// A replica that has not synced since it rejoined is too stale to be
	// promoted: the next round might kill its master.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := c.info(ctx, victim.addr, "info", "replication")
		if strings.Contains(out, "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s rejoined but did not sync with its master: %s", victim.addr, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
