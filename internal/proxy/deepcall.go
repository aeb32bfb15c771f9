package proxy

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// A held stream's goroutine keeps whatever stack it grew to: the runtime
// halves a stack only when under a quarter of it is in use, and a stream
// waiting on its backend has ~6 KiB of frames on it (net/http's conn.serve,
// the gateway's chain, Forward and the relay, the read), so one grown to
// 16 KiB stays 16 KiB for the stream's life. Two calls under the chain
// grew it past 8 KiB: the stream's first write (its flush runs net/http's
// (*chunkWriter).writeHeader, a 2.8 KiB frame, and the head's sorted write
// under it: ~4 KiB below the relay, where an 8 KiB stack has ~2 KiB left)
// and the dial of a new backend connection (net's dial and socket calls,
// ~2 KiB below the h1 client). Those run on a deepCalls worker, whose stack
// grew once, and the stream's goroutine stays at 8 KiB
// (BenchmarkHeldStreamStack, TestHeldStreamStackStays8KiB in the gateway).
// A stream's later writes reach no header code: ~1 KiB under the relay.
// A fresh goroutine per call would do as well for the stack, but each
// grows its own from 2 KiB (+21k instructions a stream, measured by
// streammem2); a worker's stack is grown already.

// deepWorkers bounds the workers one deepCalls keeps: a call blocked (a
// first write on a slow client, up to server.send_timeout; a connect,
// which parks its worker until the kernel answers, up to
// timeouts.connect) holds its worker, and with all of them busy a call
// runs on its caller's stack as before (correct, 8 KiB more for that
// stream). A goroutine of its own for such a call keeps the bound but
// not the memory: a burst of 1,000 new streams dials at once, and 1,000
// short-lived stacks grown to 8 KiB left RSS where it was (measured).
const deepWorkers = 64

// deepIdle is how long a worker waits for its next call before it ends.
// Under a steady flow of new streams the workers stay; below one a second
// a stream may start one afresh (its stack grown from 2 KiB, what a
// worker saves). Their owner's retirement (close: a reload's retired
// Forwarder, the Transport cache's dialers at shutdown) ends them sooner,
// and Workers joins them.
const deepIdle = time.Second

// Workers counts the deepCalls workers of a process, every Forwarder's
// (one per runtime: a reload builds another) and the lean clients'
// dialers', and joins them once their owners are closed: a retired
// runtime's workers used to end only on their idle timer, joined by
// nobody. Safe for concurrent use; the zero value counts none.
type Workers struct {
	mu   sync.Mutex
	live int
	zero chan struct{} // closed when live drops to 0; nil while nobody waits
	// inline counts the calls run on their caller's stack because every
	// worker of their deepCalls was busy.
	inline atomic.Uint64
}

// Live is the workers running now, busy or idle.
func (w *Workers) Live() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.live
}

// Inline is the calls run on their caller's stack because all their
// pool's workers (deepWorkers) were busy.
func (w *Workers) Inline() uint64 { return w.inline.Load() }

// Wait returns once no worker runs, or with ctx's cause (wrapped, with
// the count left) when ctx ends first; nil at once for a nil w. Close the
// owners first (Forwarder.Close, Transport.Close): an open pool starts
// workers again.
func (w *Workers) Wait(ctx context.Context) error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	if w.live == 0 {
		w.mu.Unlock()
		return nil
	}
	if w.zero == nil {
		w.zero = make(chan struct{})
	}
	zero := w.zero
	w.mu.Unlock()
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("proxy: %d call workers still running: %w", w.Live(), context.Cause(ctx))
	}
}

func (w *Workers) add() {
	w.mu.Lock()
	w.live++
	w.mu.Unlock()
}

func (w *Workers) done() {
	w.mu.Lock()
	if w.live--; w.live == 0 && w.zero != nil {
		close(w.zero)
		w.zero = nil
	}
	w.mu.Unlock()
}

// deepCalls hands calls to idle workers and waits for them. Safe for
// concurrent use.
type deepCalls struct {
	work    chan *deepCall // unbuffered: taken only by an idle worker
	workers atomic.Int32   // this pool's, bounded by deepWorkers
	owner   *Workers       // counts and joins them
	// own counts this pool's alone, so a reload's retired Forwarder can
	// be joined (Forwarder.Wait) while the others' workers run on.
	own Workers
	// stop is closed by close: idle workers end at once, busy ones after
	// their call, and later calls run on their caller's stack (correct,
	// 8 KiB more for that stream: a retired runtime's last streams).
	stop    chan struct{}
	stopped atomic.Bool
}

// newDeepCalls makes a pool whose workers owner counts (nil: a count of
// its own, joined by nobody).
func newDeepCalls(owner *Workers) *deepCalls {
	if owner == nil {
		owner = &Workers{}
	}
	return &deepCalls{work: make(chan *deepCall), owner: owner, stop: make(chan struct{})}
}

// close tells the workers to stop; owner.Wait joins them. Idempotent.
func (d *deepCalls) close() {
	if d.stopped.CompareAndSwap(false, true) {
		close(d.stop)
	}
}

// deepCall is one call to run on a worker. A caller may keep and reuse
// one (a stream's first write: pooled, no allocation a stream).
type deepCall struct {
	fn func()
	// panicked is what fn panicked with, raised again on the caller's
	// goroutine (net/http's recovery of a handler, http.ErrAbortHandler).
	panicked any
	done     chan struct{} // cap 1
}

func newDeepCall(fn func()) *deepCall {
	return &deepCall{fn: fn, done: make(chan struct{}, 1)}
}

// run runs c.fn on a worker's stack when one is idle or may start, on
// this one otherwise, and returns when it has.
func (d *deepCalls) run(c *deepCall) {
	if d.stopped.Load() {
		c.call() // closed: its owner retired
	} else {
		d.start(c)
	}
	<-c.done
	if p := c.panicked; p != nil {
		c.panicked = nil
		panic(p)
	}
}

// start hands c to an idle worker, or to a new one, or, all deepWorkers
// busy, runs it on this stack.
func (d *deepCalls) start(c *deepCall) {
	select {
	case d.work <- c:
	default:
		if d.workers.Add(1) > deepWorkers {
			d.workers.Add(-1)
			d.owner.inline.Add(1)
			c.call() // every worker busy: on this stack
			return
		}
		// Counted first, then stop read again: a close since run looked
		// may have been joined already (Workers.Wait saw none live), and
		// a worker started now would outlive the join (shutdown's: a
		// stream still writing its head as the drain cut it). Counted
		// before that read, a worker is either seen by the Wait or sees
		// the close (TestCallAfterCloseStartsNoWorker).
		d.add()
		if d.stopped.Load() {
			d.done()
			d.workers.Add(-1)
			c.call() // closed: its owner retired
			return
		}
		go d.serve(c) // ends when idle for deepIdle, or at close
	}
}

// serve runs first, then the calls handed to it until it has been idle
// for deepIdle. Its ballast keeps a quarter of an 8 KiB stack in use
// while the worker waits: with less, each collection halves an idle
// worker's stack and its next call grows it again (runtime.newstack,
// ~12k instructions a stream under bench/server-callgrind.sh MODE=stream,
// measured). The calls need ~4.5 KiB under it: within 8 KiB.
//
//go:noinline
func (d *deepCalls) serve(first *deepCall) {
	var ballast [1536]byte
	d.loop(first, &ballast)
}

//go:noinline
func (d *deepCalls) loop(first *deepCall, ballast *[1536]byte) {
	ballast[0] = 1 // in use: not optimised away
	defer d.done()
	defer d.workers.Add(-1)
	first.call()
	idle := time.NewTimer(deepIdle)
	defer idle.Stop()
	for {
		select {
		case c := <-d.work:
			c.call()
			idle.Reset(deepIdle)
		case <-idle.C:
			return
		case <-d.stop:
			return
		}
	}
}

// add and done count a worker in its owner's count and the pool's own.
// done leaves the owner's first: a join of the pool's own (Forwarder.Wait,
// a reload's joinRetired) returns only once its workers have left the
// process-wide count too. The other way round, for a moment after that
// join the owner still counted a worker it had joined
// (TestForwarderWaitJoinsItsOwnWorkers failed 3 runs in 2,000 under -race).
func (d *deepCalls) add() {
	d.owner.add()
	d.own.add()
}

func (d *deepCalls) done() {
	d.owner.done()
	d.own.done()
}

func (c *deepCall) call() {
	defer func() {
		c.panicked = recover()
		c.done <- struct{}{}
	}()
	c.fn()
}

// firstSend is a stream's first write and flush (relayStream), run on a
// worker: it writes the answer's head. A streamBufs carries it.
type firstSend struct {
	deepCall
	f       *Forwarder
	w       http.ResponseWriter
	flusher http.Flusher
	wd      *watchdog
	p       []byte
	err     error
}

func newFirstSend() *firstSend {
	s := &firstSend{deepCall: deepCall{done: make(chan struct{}, 1)}}
	s.fn = s.write // once: the method value is an allocation
	return s
}

func (s *firstSend) write() {
	if _, s.err = s.f.toClient(s.w, s.wd, s.p); s.err == nil && s.flusher != nil {
		s.flusher.Flush()
	}
}

// firstWrite writes p to w and flushes it as toClient and the relay
// would, on a worker's stack.
func (f *Forwarder) firstWrite(s *firstSend, w http.ResponseWriter, flusher http.Flusher, wd *watchdog, p []byte) error {
	s.f, s.w, s.flusher, s.wd, s.p = f, w, flusher, wd, p
	f.deep.run(&s.deepCall)
	err := s.err
	s.f, s.w, s.flusher, s.wd, s.p, s.err = nil, nil, nil, nil, nil, nil // pooled: hold nothing of the stream
	return err
}
