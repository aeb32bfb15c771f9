package jobs

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pullsWaiting is how many pull requests the server holds for each
// class's consumer (0 before the consumer exists).
func pullsWaiting(t *testing.T, s *Store) (interactive, batch int) {
	t.Helper()
	n := func(class string) int {
		c, err := s.js.Consumer(t.Context(), workStream, "jobs-"+class)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.NumWaiting
	}
	return n("interactive"), n("batch")
}

// An idle worker holds one waiting pull per class, whatever its
// concurrency: its slots share them instead of each asking NATS every
// PollWait, which made an idle gateway (64 slots) wake some 190 times a
// second (issue 12). Both classes are waited on at once, so a job of
// either is taken as soon as it is queued.
func TestIdleWorkerHoldsOnePullPerClass(t *testing.T) {
	s, _ := newStore(t, nil)
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 8, PollWait: 2 * time.Second, Executor: okExec(&calls)})
	eventually(t, "the idle worker's pulls", func() bool {
		i, b := pullsWaiting(t, s)
		return i+b >= 2
	})
	for range 20 {
		if i, b := pullsWaiting(t, s); i > 1 || b > 1 {
			t.Fatalf("the server holds %d pulls on interactive and %d on batch, want at most 1 each", i, b)
		}
	}
	// The worker still takes jobs of both classes.
	inter, _, err := s.Submit(t.Context(), spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	bs := spec("acme")
	bs.Class = "batch"
	batch, _, err := s.Submit(t.Context(), bs)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{inter.ID, batch.ID} {
		eventually(t, "job "+id, func() bool { return mustJob(t, s, "acme", id).Status == StatusSucceeded })
	}
}

// switchGate is a Gate that can close again.
type switchGate struct {
	mu      sync.Mutex
	open    bool
	changed chan struct{}
	waiting atomic.Int64
}

func newSwitchGate(open bool) *switchGate {
	return &switchGate{open: open, changed: make(chan struct{})}
}

func (g *switchGate) Wait(ctx context.Context, model string) error {
	for {
		g.mu.Lock()
		open, ch := g.open, g.changed
		g.mu.Unlock()
		if open {
			return nil
		}
		g.waiting.Add(1)
		select {
		case <-ch:
			g.waiting.Add(-1)
		case <-ctx.Done():
			g.waiting.Add(-1)
			return ctx.Err()
		}
	}
}

func (g *switchGate) set(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = open
	close(g.changed)
	g.changed = make(chan struct{})
}

// Slots that passed the gate while the pool had room take nothing once it
// is full: every pull asks the gate again, so the job stays queued for a
// gateway with room, and runs here once there is room again.
func TestClosedGateStopsPullsOfWaitingSlots(t *testing.T) {
	s, _ := newStore(t, nil)
	g := newSwitchGate(true)
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 4, Gate: g, Executor: okExec(&calls)})
	eventually(t, "the idle worker's pulls", func() bool {
		i, b := pullsWaiting(t, s)
		return i+b >= 2
	})
	g.set(false)
	// The slots wait for messages; the dispatcher asks the gate before
	// its next pull, and the outstanding ones expire (PollWait).
	eventually(t, "the pulls to end at the closed gate", func() bool {
		i, b := pullsWaiting(t, s)
		return i+b == 0 && g.waiting.Load() >= 1
	})
	j, _, err := s.Submit(t.Context(), spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.js.Consumer(t.Context(), workStream, "jobs-interactive")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the job's message", func() bool {
		info, err := c.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending != 0 || calls.Load() != 0 {
			t.Fatalf("a message was taken through a closed gate (ack pending %d, executed %d)", info.NumAckPending, calls.Load())
		}
		return info.NumPending == 1
	})
	if got := mustJob(t, s, "acme", j.ID); got.Status != StatusQueued {
		t.Fatalf("job %s behind a closed gate", got.Status)
	}
	g.set(true)
	eventually(t, "the job after the gate opened", func() bool {
		return mustJob(t, s, "acme", j.ID).Status == StatusSucceeded
	})
}

// A message the server hands a pull after the worker stopped waiting for
// that pull's answer runs at once, not after AckWait. The relay holds
// what the server sends the worker while the job is submitted and handed
// to the worker's pull, until the worker has given that pull up: it sends
// its next pull request (with one slot and one class it has one out at a
// time). Then the message reaches the worker, late, while that request
// is out for the slot: the worker gives the message back and takes it
// again. nats.go's Fetch, which stops listening a second after the pull's
// expiry, dropped it, and the job waited out AckWait: an hour here, so
// the test's patience (20 s, eventually) fails the old dispatcher instead
// of it passing by luck.
func TestLateDeliveryRunsAtOnce(t *testing.T) {
	direct, rl, calls := startLateWorker(t, nil)
	j, cons := deliverHeld(t, direct, rl)
	rl.waitCount(t, rl.count()) // the worker gave up the pull it went to
	rl.release()

	eventually(t, "the late message's job", func() bool {
		return mustJob(t, direct, "acme", j.ID).Status == StatusSucceeded
	})
	// Two deliveries: the late one, given back because a request was out
	// for the only slot (holding it would take more messages than slots
	// wait for), and the one that ran.
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != 2 || calls.Load() != 1 {
		t.Fatalf("%d deliveries, executed %d times; want 2 and 1", info.Delivered.Consumer, calls.Load())
	}
}

// A late message for which a slot waits, with no request out for that
// slot, goes to the slot: no round trip through the server. The gate
// closes once the message is handed out held, so that the worker, having
// given its pull up, asks the gate and sends nothing; the message then
// reaches the slot, which asks the gate for the job's model; only then
// does the gate open. One delivery in all: the message was not given
// back. The old dispatcher dropped it, and the slot never gets it.
func TestLateDeliveryGoesToAWaitingSlot(t *testing.T) {
	g := newSwitchGate(true)
	direct, rl, calls := startLateWorker(t, g)
	j, cons := deliverHeld(t, direct, rl)
	g.set(false)
	// The dispatcher asks the gate only once no request is out: it gave
	// up the pull the message went to.
	eventually(t, "the dispatcher to ask the closed gate", func() bool { return g.waiting.Load() >= 1 })
	rl.release()
	eventually(t, "the slot to ask the gate for the job's model", func() bool { return g.waiting.Load() >= 2 })
	g.set(true)

	eventually(t, "the late message's job", func() bool {
		return mustJob(t, direct, "acme", j.ID).Status == StatusSucceeded
	})
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != 1 || calls.Load() != 1 {
		t.Fatalf("%d deliveries, executed %d times; want 1 and 1", info.Delivered.Consumer, calls.Load())
	}
}

// startLateWorker runs a worker with one slot on the interactive class,
// connected through a relay, with AckWait an hour; direct is a Store on
// the same server beside it.
func startLateWorker(t *testing.T, g Gate) (direct *Store, rl *relay, calls *atomic.Int64) {
	t.Helper()
	srv := startServer(t, t.TempDir())
	rl = startRelay(t, srv.ClientURL(), "CONSUMER.MSG.NEXT."+workStream+".jobs-interactive ")
	o := testOptions(srv.ClientURL())
	o.AckWait = time.Hour
	direct = openStore(t, o)
	o.URL = rl.url()
	worker := openStore(t, o)
	calls = new(atomic.Int64)
	startWorker(t, worker, WorkerOptions{Classes: []string{"interactive"}, Gate: g, Executor: okExec(calls)})
	t.Cleanup(rl.release) // before the worker stops, should the test fail holding
	eventually(t, "the worker's pull", func() bool {
		i, _ := pullsWaiting(t, direct)
		return i >= 1
	})
	return direct, rl, calls
}

// deliverHeld holds what the server sends the worker, submits a job and
// waits until the server has handed its message to the worker.
func deliverHeld(t *testing.T, direct *Store, rl *relay) (*Job, jetstream.Consumer) {
	t.Helper()
	rl.hold()
	j, _, err := direct.Submit(t.Context(), spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := direct.js.Consumer(t.Context(), workStream, "jobs-interactive")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the message's delivery to the worker", func() bool {
		info, err := cons.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.NumAckPending == 1
	})
	return j, cons
}
