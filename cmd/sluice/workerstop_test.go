package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sluice-gw/sluice/internal/app"
	"github.com/sluice-gw/sluice/internal/jobs"
)

// stallingTCP forwards a NATS client's TCP connections to addr until
// stall: then nothing more reaches either side, as from a nats-server
// looping under a stream's lock (a damaged KV block, docs/RELIABILITY.md
// kvwedge) or stopped (SIGSTOP). What the client sends from then is read
// and dropped (the kernel's buffers would take it as well), so that the
// client's close of its connection is seen: clientGone closes then.
type stallingTCP struct {
	ln         net.Listener
	addr       string
	stalled    chan struct{}
	released   chan struct{}
	clientGone chan struct{}
	stallOne   sync.Once
	goneOne    sync.Once
	wg         sync.WaitGroup
	mu         sync.Mutex
	conns      []net.Conn
}

func newStallingTCP(t *testing.T, addr string) *stallingTCP {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallingTCP{ln: ln, addr: addr, stalled: make(chan struct{}), released: make(chan struct{}),
		clientGone: make(chan struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(p.release)
	return p
}

func (p *stallingTCP) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.addr)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Go(func() { p.pump(up, c, true) })
		p.wg.Go(func() { p.pump(c, up, false) })
	}
}

// pump copies src to dst until stall; then a client's side is read and
// dropped until the client closes it, a server's is no more read.
func (p *stallingTCP) pump(dst, src net.Conn, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.stalled:
			if !fromClient {
				<-p.released
				return
			}
			if err != nil {
				select {
				case <-p.released:
				default:
					p.goneOne.Do(func() { close(p.clientGone) })
				}
				return
			}
			continue
		default:
		}
		if err != nil {
			return
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *stallingTCP) url() string { return "nats://" + p.ln.Addr().String() }
func (p *stallingTCP) stall()      { p.stallOne.Do(func() { close(p.stalled) }) }
func (p *stallingTCP) release() {
	select {
	case <-p.released:
		return
	default:
	}
	p.stall()
	close(p.released)
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestWorkerStopIsBoundedOnAWedgedNATS: `sluice worker` over TCP to a
// real embedded NATS that stops answering (nothing reaches the worker
// any more, as from a wedged or SIGSTOPped server), then its SIGTERM
// (main's context ends). Before, the worker's store close waited on the
// drain of its connection until nats.go's DrainTimeout (30 s; measured
// 15-26 s here after the signal), the process gone only once its
// connection was closed. Now the close is given up at the end of the
// stop's bound (--grace 3s + 2 s + 5 s after the signal: the close gets
// 5 s and what the workers left of their 5 s; it was a fixed 5 s): the
// worker returns while its connection is still open, drain pending, and
// says the stop was not clean (app.ErrStopNotClean: exit 1; it was nil,
// exit 0). The order is what is checked, not a time: a hang guard of
// 2 min only ends a test that would wait for good.
func TestWorkerStopIsBoundedOnAWedgedNATS(t *testing.T) {
	e, err := jobs.StartEmbedded(jobs.EmbeddedOptions{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	proxy := newStallingTCP(t, strings.TrimPrefix(e.ClientURL(), "nats://"))
	// The gateway's admin listener: /spare says there is room.
	admin := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer admin.Close()
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runWorker(ctx, []string{"--nats", proxy.url(), "--admin", admin.URL, "--token", "t", "--grace", "3s"}, io.Discard, logs)
	}()
	// Running: its consumers made through the proxy.
	js := jetStreamOf(t, e.ClientURL())
	for ctxWait, stop := context.WithTimeout(context.Background(), time.Minute); ; {
		if _, err := js.Consumer(ctxWait, "SLUICE_JOBS", "jobs-interactive"); err == nil {
			stop()
			break
		} else if ctxWait.Err() != nil {
			stop()
			t.Fatalf("the worker made no consumer: %v", err)
		}
		select { // a poll of a state another process makes, not a synchronisation of this one's
		case <-time.After(20 * time.Millisecond):
		case err := <-done:
			t.Fatalf("worker ended before it ran: %v", err)
		}
	}
	proxy.stall()
	cancel() // SIGTERM
	var stopErr error
	select {
	case stopErr = <-done:
		// The stop was given up: not a clean one, and the exit status
		// says so (it was nil, exit 0, as after a clean stop).
		if !errors.Is(stopErr, app.ErrStopNotClean) {
			t.Fatalf("worker's stop given up past its bound returned %v; want app.ErrStopNotClean", stopErr)
		}
	case <-proxy.clientGone:
		err := <-done
		t.Fatalf("the worker's stop waited until NATS let its connection go (the drain's timeout), then returned %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the worker's stop still waiting on a wedged NATS after 2 min")
	}
	select {
	case <-proxy.clientGone:
		t.Fatal("the connection closed before the worker returned: was NATS wedged at all?")
	default:
	}
	if !strings.Contains(logs.String(), "did not close within its bound") {
		t.Errorf("no ERROR line saying the close was given up:\n%s", logs.String())
	}
	var stderr bytes.Buffer
	// The bound named is 5 s plus what the jobs left of --grace + 2 s,
	// rounded to the second: 10 s when the workers ended at once, less as
	// a loaded machine slows their stop (with --grace 100ms, 2.1 s left
	// room for none: a hog run named 5 s and failed "[67]s"); over 5 s
	// while they end within 4.5 s. The old fixed bound named 5 s.
	st := exitStatus(ctx, "worker", stopErr, io.Discard, &stderr)
	m := regexp.MustCompile(`stop not clean: the job store did not close within (\d+)s`).FindStringSubmatch(stderr.String())
	if st != 1 || m == nil {
		t.Fatalf("exit status %d, stderr %q; want 1 and the reason", st, stderr.String())
	}
	if n, _ := strconv.Atoi(m[1]); n < 6 || n > 10 {
		t.Errorf("the close's bound named %s s; want 6-10: 5 s and what the workers left of --grace 3s + 2 s", m[1])
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// jetStreamOf is a JetStream client of url, closed with the test.
func jetStreamOf(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestWaitWorkerGivesUpAfterTheCut: workers that do not return (a slot
// blocked in a call on a NATS that answers nothing) no longer keep the
// process: after the first signal they get their grace (here an hour)
// and workerCutBound; a second signal (the cut) leaves them
// workerCutBound from then. RunWorker's own end is taken at any time.
func TestWaitWorkerGivesUpAfterTheCut(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cut := make(chan struct{})
	close(cut)
	never := make(chan error)
	if stopped, _, _ := waitWorker(ctx, never, cut, time.Hour, wallStopClock()); stopped {
		t.Fatal("stopped reported for workers that never returned")
	}
	done := make(chan error, 1)
	done <- errors.New("jobs: invalid class")
	if stopped, left, err := waitWorker(context.Background(), done, nil, time.Hour, wallStopClock()); !stopped || err == nil || left != 0 {
		t.Fatalf("RunWorker's own end: stopped %v, left %v, %v; want its close to get workerCloseBound alone", stopped, left, err)
	}
}

// TestWorkerCloseGetsWhatTheWorkersLeft: workers that end at once after
// the first signal leave the store's close the rest of their bound (here
// an hour's grace): a NATS that is slow but answers is waited for within
// the stop's whole bound (--grace + 2 s + 5 s, as serve's), where the
// close was cut at a fixed workerCloseBound (5 s) and the worker exited 1.
func TestWorkerCloseGetsWhatTheWorkersLeft(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	done <- context.Canceled
	stopped, left, _ := waitWorker(ctx, done, nil, time.Hour, wallStopClock())
	if b := closeBound(left); !stopped || b <= time.Hour || b > time.Hour+workerCutBound+workerCloseBound {
		t.Fatalf("stopped %v, close bound %v; want (1h, 1h7s]: the grace the workers did not use, on top of workerCloseBound", stopped, b)
	}
}

// fakeStopClock is a stopClock the test moves: after's channels are
// handed to the test (timers), which fires them.
type fakeStopClock struct {
	mu     sync.Mutex
	t      time.Time
	timers chan time.Duration
}

func (c *fakeStopClock) clock() stopClock {
	return stopClock{
		now: func() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t },
		after: func(d time.Duration) <-chan time.Time {
			c.timers <- d
			return make(chan time.Time) // never fires: left is what the test reads
		},
	}
}

func (c *fakeStopClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// TestWaitWorkerSecondSignalOnlyShortens: a second signal in the last
// workerCutBound of the first's bound (--grace + workerCutBound) does not
// push it later. Before, the cut reset the bound to workerCutBound from
// itself: one second before the bound, it gave the workers 2 s, and the
// whole stop could end at --grace + 9 s, past the --grace + 7 s a
// supervisor's kill timeout is told to exceed.
func TestWaitWorkerSecondSignalOnlyShortens(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	clk := &fakeStopClock{t: t0, timers: make(chan time.Duration, 4)}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done, cut := make(chan error), make(chan struct{})
	type result struct {
		stopped bool
		left    time.Duration
	}
	got := make(chan result, 1)
	grace := 10 * time.Second
	go func() {
		stopped, left, _ := waitWorker(ctx, done, cut, grace, clk.clock())
		got <- result{stopped, left}
	}()
	hang := time.After(time.Minute)
	select {
	case d := <-clk.timers:
		if d != grace+workerCutBound {
			t.Fatalf("first bound %v; want %v", d, grace+workerCutBound)
		}
	case <-hang:
		t.Fatal("waitWorker took no bound within a minute")
	}
	clk.set(t0.Add(grace + workerCutBound - time.Second)) // 1 s of the bound left
	cut <- struct{}{}
	done <- context.Canceled
	select {
	case r := <-got:
		if !r.stopped || r.left != time.Second {
			t.Fatalf("after a second signal 1 s before the bound: stopped %v, left %v; want 1s (the cut does not lengthen the bound)", r.stopped, r.left)
		}
	case <-hang:
		t.Fatal("waitWorker did not return within a minute")
	}
}
