package admission

import (
	"context"
	"errors"
	"testing"
	"time"
)

// acquireWatched runs AcquireWithProgress in a goroutine owned by the
// test, with a tick channel the test sends on and the reports on places.
func acquireWatched(q *Queue, ctx context.Context, r Request) (tick chan time.Time, places chan Place, res <-chan result) {
	tick, places = make(chan time.Time), make(chan Place, 16)
	ch := make(chan result, 1)
	go func() {
		t, err := q.AcquireWithProgress(ctx, r, Progress{Tick: tick, Report: func(p Place) { places <- p }})
		ch <- result{t, err}
	}()
	return tick, places, ch
}

func nextPlace(t *testing.T, places <-chan Place) Place {
	t.Helper()
	select {
	case p := <-places:
		return p
	case <-time.After(time.Minute): // a hang guard
		t.Fatal("no progress report")
		return Place{}
	}
}

func TestProgressReportsPositionAndEstimateWhileQueued(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Fair: true, PriorSlotRate: 100}, newCapacity(1).get, clk.Now)
	hold := grantedT(t, q, Request{Tenant: "a", Cost: 100})
	first := acquireAsync(q, context.Background(), Request{Tenant: "a", Cost: 100})
	eventually(t, "first queued", func() bool { return q.Stats().Queued == 1 })
	second := acquireAsync(q, context.Background(), Request{Tenant: "b", Cost: 100})
	eventually(t, "second queued", func() bool { return q.Stats().Queued == 2 })

	// Tenant a's second request: behind a's first and b's first in fair order.
	tick, places, res := acquireWatched(q, context.Background(), Request{Tenant: "a", Cost: 100})
	p := nextPlace(t, places) // reported at once when queued
	if p.Position != 3 || p.Waited != 0 {
		t.Fatalf("on queueing: %+v, want position 3, waited 0", p)
	}
	if p.Wait <= 0 || p.Wait >= MaxWait || !p.Start.Equal(clk.Now().Add(p.Wait)) {
		t.Fatalf("estimate %+v: want a finite wait and start = now + wait", p)
	}
	firstWait := p.Wait

	clk.Advance(time.Second)
	hold.Release() // a's first is granted
	r1 := await(t, first)
	tick <- clk.Now()
	p = nextPlace(t, places)
	if p.Position != 2 || p.Waited != time.Second || p.Wait >= firstWait {
		t.Fatalf("after one grant: %+v, want position 2, waited 1s, a shorter wait than %v", p, firstWait)
	}

	r1.t.Release()
	r2 := await(t, second)
	tick <- clk.Now()
	if p = nextPlace(t, places); p.Position != 1 {
		t.Fatalf("next in line: %+v", p)
	}
	r2.t.Release()
	got := await(t, res)
	if got.err != nil || got.t == nil {
		t.Fatalf("granted: %v", got.err)
	}
	got.t.Release()
	select {
	case p := <-places:
		t.Fatalf("reported %+v after the grant", p)
	default:
	}
}

func TestProgressNotReportedWhenGrantedOrRefusedAtArrival(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Fair: true, MaxQueued: 1}, newCapacity(1).get, clk.Now)
	_, places, res := acquireWatched(q, context.Background(), Request{Tenant: "a"})
	hold := await(t, res)
	if hold.err != nil {
		t.Fatal(hold.err)
	}
	defer hold.t.Release()
	waiting := acquireAsync(q, context.Background(), Request{Tenant: "a"})
	eventually(t, "queued", func() bool { return q.Stats().Queued == 1 })
	_, _, res = acquireWatched(q, context.Background(), Request{Tenant: "a"})
	var rej *Rejection
	if got := await(t, res); !errors.As(got.err, &rej) {
		t.Fatalf("want a refusal at arrival, got %v", got.err)
	}
	if len(places) != 0 {
		t.Fatalf("reports for requests never queued: %d", len(places))
	}
	hold.t.Release()
	if r := await(t, waiting); r.t != nil {
		r.t.Release()
	}
}

func TestProgressReportStopsAtRefusalAfterQueueing(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Fair: true}, newCapacity(1).get, clk.Now)
	hold := grantedT(t, q, Request{Tenant: "a"})
	defer hold.Release()
	tick, places, res := acquireWatched(q, context.Background(), Request{Tenant: "b", Deadline: clk.Now().Add(time.Hour)})
	nextPlace(t, places)
	clk.Advance(2 * time.Hour)
	q.Kick() // past its deadline: refused
	var rej *Rejection
	if got := await(t, res); !errors.As(got.err, &rej) || rej.Reason != Deadline {
		t.Fatalf("want a deadline refusal, got %v", got.err)
	}
	select {
	case tick <- clk.Now():
		t.Fatal("a decided request still takes ticks")
	default:
	}
}
