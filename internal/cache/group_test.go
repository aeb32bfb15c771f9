package cache

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func (g *Group) waiters(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.calls[key]; c != nil {
		return c.waiters
	}
	return 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		runtimeGosched()
	}
}

func TestGroupOneUpstreamCall(t *testing.T) {
	m, _ := NewMetrics(nil)
	g := &Group{Metrics: m}
	var calls atomic.Int32
	release := make(chan struct{})
	fn := func(ctx context.Context) (*Entry, error) {
		calls.Add(1)
		<-release
		return entry(`{"ok":true}`), nil
	}
	const n = 50
	var wg sync.WaitGroup
	var sharedN atomic.Int32
	for range n {
		wg.Go(func() {
			e, shared, err := g.Do(context.Background(), "k", fn)
			if err != nil || string(e.Body) != `{"ok":true}` {
				t.Errorf("Do: %v %v", e, err)
			}
			if shared {
				sharedN.Add(1)
			}
		})
	}
	waitFor(t, func() bool { return g.waiters("k") == n })
	close(release)
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("%d upstream calls", calls.Load())
	}
	if sharedN.Load() != n-1 {
		t.Fatalf("%d followers", sharedN.Load())
	}
	if got := testutilCounter(m); got != n-1 {
		t.Fatalf("coalesced metric %v", got)
	}
	// Finished calls are forgotten: the next request runs again.
	if _, shared, _ := g.Do(context.Background(), "k", fn); shared || calls.Load() != 2 {
		t.Fatal("a finished call was reused")
	}
}

func TestGroupLeaverDoesNotCancelUpstream(t *testing.T) {
	var g Group
	started, release := make(chan struct{}), make(chan struct{})
	upErr := make(chan error, 1)
	fn := func(ctx context.Context) (*Entry, error) {
		close(started)
		<-release
		upErr <- ctx.Err()
		return entry(`{}`), nil
	}
	leaderCtx, leaderCancel := context.WithCancel(context.Background())
	leaderDone := make(chan error, 1)
	go func() {
		_, _, err := g.Do(leaderCtx, "k", fn)
		leaderDone <- err
	}()
	<-started
	followerDone := make(chan *Entry, 1)
	go func() {
		e, _, _ := g.Do(context.Background(), "k", fn)
		followerDone <- e
	}()
	waitFor(t, func() bool { return g.waiters("k") == 2 })

	leaderCancel() // the leader's client disconnects
	if err := <-leaderDone; err != context.Canceled {
		t.Fatalf("leader: %v", err)
	}
	close(release)
	if err := <-upErr; err != nil {
		t.Fatalf("upstream context cancelled while a follower waited: %v", err)
	}
	if e := <-followerDone; e == nil {
		t.Fatal("follower got no entry")
	}
}

func TestGroupAllLeaveCancelsUpstream(t *testing.T) {
	var g Group
	started := make(chan struct{})
	upErr := make(chan error, 1)
	fn := func(ctx context.Context) (*Entry, error) {
		close(started)
		<-ctx.Done()
		upErr <- ctx.Err()
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		_, _, _ = g.Do(ctx, "k", fn)
		close(done)
	}()
	<-started
	cancel()
	<-done
	if err := <-upErr; err != context.Canceled {
		t.Fatalf("upstream: %v", err)
	}
}

func TestGroupPanic(t *testing.T) {
	var g Group
	_, _, err := g.Do(context.Background(), "k", func(context.Context) (*Entry, error) { panic("boom") })
	if err == nil {
		t.Fatal("panic not turned into an error")
	}
}

func runtimeGosched() { runtime.Gosched() }

func testutilCounter(m *Metrics) float64 { return testutil.ToFloat64(m.coalesced) }
