package proxy

import (
	"context"
	"testing"
	"time"
)

// TestCallWorkersCountedBoundedAndJoined: a pool starts up to deepWorkers
// workers, counted live by their Workers; with all of them busy a call
// runs on its caller's stack and is counted inline; close stops them,
// busy ones once their call returns, and Wait joins them; a call after
// close runs inline, uncounted, and starts no worker.
func TestCallWorkersCountedBoundedAndJoined(t *testing.T) {
	var w Workers
	d := newDeepCalls(&w)
	release := make(chan struct{})
	running := make(chan struct{}, deepWorkers)
	returned := make(chan struct{}, deepWorkers)
	for range deepWorkers {
		go func() {
			d.run(newDeepCall(func() { running <- struct{}{}; <-release }))
			returned <- struct{}{}
		}()
	}
	for range deepWorkers {
		<-running
	}
	if n := w.Live(); n != deepWorkers {
		t.Fatalf("live workers = %d, want %d", n, deepWorkers)
	}
	ran := false
	d.run(newDeepCall(func() { ran = true })) // all busy: here
	if !ran || w.Inline() != 1 {
		t.Fatalf("a call with every worker busy: ran %v, inline %d; want it run here, counted 1", ran, w.Inline())
	}

	d.close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Wait(ctx); err == nil {
		t.Fatal("Wait returned nil while every worker was busy")
	}
	close(release)
	for range deepWorkers {
		<-returned
	}
	if err := w.Wait(context.Background()); err != nil || w.Live() != 0 {
		t.Fatalf("Wait after close = %v with %d live; want nil, 0", err, w.Live())
	}
	d.run(newDeepCall(func() {}))
	if w.Live() != 0 || w.Inline() != 1 {
		t.Fatalf("a call after close: %d live, %d inline; want 0 and 1 (run here, not counted busy)", w.Live(), w.Inline())
	}
}

// TestCallAfterCloseStartsNoWorker: a call that found its pool open
// (run's check) and reaches start after close runs on its caller's
// stack: a worker started then was counted after its owner's Wait may
// have returned with none live (shutdown's join), and ran on past it.
// The call reads the live count while it runs: 1 on a worker, 0 here.
func TestCallAfterCloseStartsNoWorker(t *testing.T) {
	var w Workers
	d := newDeepCalls(&w)
	d.close()
	if err := w.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	live := -1
	c := newDeepCall(func() { live = w.Live() })
	d.start(c) // as run does, having read the pool open just before close
	<-c.done
	if live != 0 {
		t.Fatalf("the call ran with %d workers live after close and the join; want 0 (run on its caller's stack)", live)
	}
	if err := w.Wait(context.Background()); err != nil || w.Live() != 0 {
		t.Fatalf("Wait = %v with %d live; want nil, 0", err, w.Live())
	}
}

// TestForwarderWaitJoinsItsOwnWorkers: two forwarders count their call
// workers in one process-wide Workers, as a reload's retired runtime and
// its successor do. The retired one (closed) is joined by its own Wait
// while its call runs on and the other's worker is busy: Wait waits for
// the closed forwarder's call alone (a reload's join, app.joinRetired),
// not for the serving runtime's. Before, the only join was the shared
// count's, which waits for every forwarder's workers: a retired
// runtime's could not be joined while another served.
func TestForwarderWaitJoinsItsOwnWorkers(t *testing.T) {
	var w Workers
	retired := NewForwarder(Options{Workers: &w})
	serving := NewForwarder(Options{Workers: &w})
	hold := func(f *Forwarder) (release func(), returned <-chan struct{}) {
		rel, running, ret := make(chan struct{}), make(chan struct{}), make(chan struct{})
		go func() {
			defer close(ret)
			f.deep.run(newDeepCall(func() { close(running); <-rel }))
		}()
		<-running
		return func() { close(rel) }, ret
	}
	releaseRetired, retiredReturned := hold(retired)
	releaseServing, servingReturned := hold(serving)
	defer func() { releaseServing(); <-servingReturned }()

	retired.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := retired.Wait(ctx); err == nil {
		t.Fatal("Wait returned nil with the closed forwarder's call still on its worker")
	}
	if n := retired.CallWorkers(); n != 1 {
		t.Fatalf("closed forwarder: %d call workers, want its busy one", n)
	}
	releaseRetired()
	<-retiredReturned
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute) // a hang's bound, not a timing
	defer cancel()
	if err := retired.Wait(ctx); err != nil {
		t.Fatalf("closed forwarder's Wait with its call done and the other's busy: %v", err)
	}
	if n, all := retired.CallWorkers(), w.Live(); n != 0 || all != 1 {
		t.Fatalf("after the join: %d of the closed forwarder's workers, %d in all; want 0 and 1 (the serving one's)", n, all)
	}
}
