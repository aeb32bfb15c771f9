package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
)

// hedgeRig is a Forwarder in front of two real loopback backends: slow
// sends its stream's head and then no token until released (or its request
// is cancelled), fast answers at once. The clock and the hedge timer are
// the test's.
type hedgeRig struct {
	t          *testing.T
	slow, fast *endpoint.Backend
	// slowGot is closed when slow has the request; slowGone when that
	// request's context ended (the proxy cancelled it).
	slowGot, slowGone chan struct{}
	releaseSlow       chan struct{}
	lateHead          chan struct{} // slowLateHead: closed to send the head
	// slowMode, when set before the request, changes what slow does.
	slowMode  slowMode
	fastCalls atomic.Int32
	// fastHold, when set before the request, makes fast hold its stream
	// after the head, like slow, until closed; fastGot is closed when it
	// has the request.
	fastHold, fastGot chan struct{}
	fire              chan time.Time     // the hedge delay's timer
	delays            chan time.Duration // each hedge delay asked of the timer
	clock             *StepClock
	budget            *HedgeBudget
	queue             *admission.Queue
	slotAsked         chan bool // each HedgeSlot answer
	front             *httptest.Server
	results           chan Result
	owner             *testOwner // runs the race's losers (Options.Owner)
	slowRead          *ReadPast  // says when the slow backend's ping was read past
	// firstToken, when set before the request, is its first-token bound
	// (Request.FirstToken).
	firstToken time.Duration
}

// slowPing is the keep-alive comment of slowPingThenHold.
const slowPing = ": ping\n\n"

// testOwner is a proxy.Owner as the gateway's Background is one: it counts
// the goroutines it runs, and shutdown() ends their stop context and
// waits for them.
type testOwner struct {
	stop   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newTestOwner() *testOwner {
	o := &testOwner{}
	o.stop, o.cancel = context.WithCancel(context.Background())
	return o
}

func (o *testOwner) Go(fn func(stop context.Context)) {
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		fn(o.stop)
	}()
}

func (o *testOwner) shutdown() {
	o.cancel()
	o.wg.Wait()
}

// slowMode is how the slow backend treats a request.
type slowMode int

const (
	slowHeadThenHold slowMode = iota // head at once, no token until released
	slowNoHead                       // accepts, no head until released
	slowBusy                         // 503 at once
	slowLateHead                     // accepts, head only once lateHead is closed, then no token
	slowPingThenHold                 // head and a keep-alive comment at once, no token until released
)

// orderedSelector picks the first backend not tried that has a free slot.
type orderedSelector []*endpoint.Backend

func (s orderedSelector) Select(tried []*endpoint.Backend) (*endpoint.Backend, error) {
	for _, b := range s {
		if !contains(tried, b) && b.HasCapacity() {
			return b, nil
		}
	}
	return nil, ErrSaturated
}

func contains(list []*endpoint.Backend, b *endpoint.Backend) bool {
	for _, x := range list {
		if x == b {
			return true
		}
	}
	return false
}

const sseAnswer = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"

func newHedgeRig(t *testing.T, budget *HedgeBudget, queueCapacity int) *hedgeRig {
	r := &hedgeRig{t: t, slowGot: make(chan struct{}), slowGone: make(chan struct{}), releaseSlow: make(chan struct{}),
		lateHead: make(chan struct{}), fire: make(chan time.Time), delays: make(chan time.Duration, 4), clock: NewStepClock(time.Unix(1000, 0)), budget: budget,
		slotAsked: make(chan bool, 4), results: make(chan Result, 1), owner: newTestOwner()}
	var once sync.Once
	slowSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		switch r.slowMode {
		case slowBusy:
			once.Do(func() { close(r.slowGot) })
			http.Error(w, `{"error":{"message":"busy"}}`, http.StatusServiceUnavailable)
			return
		case slowLateHead:
			once.Do(func() { close(r.slowGot) })
			select {
			case <-req.Context().Done():
				close(r.slowGone)
				return
			case <-r.lateHead:
			}
		case slowNoHead:
			once.Do(func() { close(r.slowGot) })
			select {
			case <-req.Context().Done():
				close(r.slowGone)
				return
			case <-r.releaseSlow:
			}
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		if r.slowMode == slowPingThenHold {
			io.WriteString(w, slowPing)
		}
		w.(http.Flusher).Flush()
		once.Do(func() { close(r.slowGot) })
		select {
		case <-req.Context().Done():
			close(r.slowGone)
		case <-r.releaseSlow:
			io.WriteString(w, sseAnswer)
		}
	}))
	fastSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.fastCalls.Add(1)
		io.Copy(io.Discard, req.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		if r.fastHold != nil {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			close(r.fastGot)
			select {
			case <-req.Context().Done():
				return
			case <-r.fastHold:
			}
		}
		io.WriteString(w, sseAnswer)
	}))
	t.Cleanup(func() { fastSrv.Close(); slowSrv.Close() })
	var err error
	if r.slow, err = endpoint.New(endpoint.Spec{URL: slowSrv.URL}, endpoint.HealthPolicy{}); err != nil {
		t.Fatal(err)
	}
	if r.fast, err = endpoint.New(endpoint.Spec{URL: fastSrv.URL}, endpoint.HealthPolicy{}); err != nil {
		t.Fatal(err)
	}
	r.queue = admission.NewQueue(admission.QueueConfig{Name: "m"}, func() int { return queueCapacity }, r.clock.Now)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	su, _ := url.Parse(slowSrv.URL)
	r.slowRead = NewReadPast(transport, su.Host, len(slowPing))
	f := NewForwarder(Options{
		Transport: r.slowRead, Timeouts: Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Hour},
		Attempts: 3, Now: r.clock.Now, Hedges: budget, Owner: r.owner,
		After: func(d time.Duration) <-chan time.Time {
			select {
			case r.delays <- d:
			default:
			}
			return r.fire
		},
	})
	bodies := NewBodyPool(nil)
	sel := orderedSelector{r.slow, r.fast}
	r.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := bodies.ReadBody(req.Body, req.ContentLength, 1<<20)
		if err != nil {
			t.Error(err)
			r.results <- Result{Err: err} // answer() waits for one result per request
			return
		}
		defer body.Release()
		r.results <- f.Forward(req.Context(), w, &Request{
			Path: "/v1/chat/completions", Header: http.Header{}, Body: body,
			Peek: openai.Peek{Model: "m", Stream: true}, ServeModel: "m",
			HedgeAfter: 50 * time.Millisecond, HedgeSlot: r.hedgeSlot, FirstToken: r.firstToken,
			KVNeed: rigKVNeed,
		}, sel)
	}))
	t.Cleanup(r.front.Close)
	return r
}

// hedgeSlot is the gateway's: a spare, unmeasured ticket of the queue.
func (r *hedgeRig) hedgeSlot(preempt func()) (func(), bool) {
	t, err := r.queue.Acquire(context.Background(), admission.Request{Tenant: "hedge", Spare: true, Preempt: preempt, Unmeasured: true})
	r.slotAsked <- err == nil
	if err != nil {
		return nil, false
	}
	return t.Release, true
}

type answer struct {
	body string
	err  error
}

// send posts a streaming request, waits until the slow backend holds it,
// and fires the hedge timer wait later by the test's clock; the send
// returns once the race has taken the timer, so the hedge decision comes
// before anything the test does next.
// rigKVNeed is every rig request's KV need, counted on a backend while
// its stream waits for its first token (endpoint.Backend.WaitingStreams).
const rigKVNeed = 777

func (r *hedgeRig) send(wait time.Duration) <-chan answer {
	answers := r.post()
	// Neither wait may outlast the request: if it ends first (an error, a
	// refusal), the test fails now instead of hanging.
	select {
	case <-r.slowGot:
	case a := <-answers:
		r.t.Fatalf("the request ended before reaching the slow backend: %q, %v", a.body, a.err)
	}
	r.clock.Advance(wait)
	select {
	case r.fire <- r.clock.Now():
	case a := <-answers:
		r.t.Fatalf("the request ended before its hedge timer fired: %q, %v", a.body, a.err)
	case <-time.After(time.Minute): // only to fail a broken build
		close(r.releaseSlow) // lets the request, and the rig's cleanup, end
		r.t.Fatal("the race never took the hedge timer")
	}
	return answers
}

// post posts a streaming request and returns its answer's channel.
func (r *hedgeRig) post() <-chan answer {
	answers := make(chan answer, 1)
	go func() {
		resp, err := http.Post(r.front.URL, "application/json", strings.NewReader(`{"model":"m","stream":true}`))
		if err != nil {
			answers <- answer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		answers <- answer{string(b), err}
	}()
	return answers
}

// slotAskedOrEnded is whether the hedge got a spare slot, failing the test
// instead of hanging if the request ends without the hedge asking for one.
func (r *hedgeRig) slotAskedOrEnded(answers <-chan answer) bool {
	r.t.Helper()
	select {
	case ok := <-r.slotAsked:
		return ok
	case a := <-answers:
		r.t.Fatalf("the request ended before the hedge asked for a slot: %q, %v", a.body, a.err)
		return false
	}
}

func (r *hedgeRig) answer(answers <-chan answer) (string, Result) {
	r.t.Helper()
	a := <-answers
	if a.err != nil {
		r.t.Fatal(a.err)
	}
	return a.body, <-r.results
}

// TestHedgeRacesSlowStreamWhenIdle: with the pool idle, a stream whose
// first token is late is hedged to the other backend, whose stream the
// client gets; the slow request runs on in the spare slot until the
// request ends, is then cancelled, not charged a failure, and its wait
// (at least 500ms) is learned as a lower bound of its backend's latency,
// so routing moves off it. The queue slot and the budget are given back.
func TestHedgeRacesSlowStreamWhenIdle(t *testing.T) {
	r := newHedgeRig(t, NewHedgeBudget(0.1, 1), 8)
	body, res := r.answer(r.send(500 * time.Millisecond))
	if body != sseAnswer || res.Hedge != HedgeWon || res.Backend != r.fast || res.Err != nil {
		t.Fatalf("body %q hedge %d backend %v err %v; want the fast backend's stream by a hedge", body, res.Hedge, res.Backend, res.Err)
	}
	if !<-r.slotAsked {
		t.Fatal("the idle queue refused the hedge a spare slot")
	}
	waitUntil(t, "the loser to be cancelled when the request ends", func() bool {
		select {
		case <-r.slowGone:
			return true
		default:
			return false
		}
	})
	waitUntil(t, "the loser to be ended", func() bool { return r.slow.Inflight() == 0 && r.queue.Stats().InUse == 0 })
	now := r.clock.Now()
	if got := r.slow.Latency(now); got < 500*time.Millisecond {
		t.Fatalf("slow backend's latency estimate %v; want at least its 500ms wait", got)
	}
	if r.slow.Failures() != 0 {
		t.Fatalf("slow backend charged %d failures; losing a race is not one", r.slow.Failures())
	}
	if r.slow.Stalled(now) != 0 || r.fast.Inflight() != 0 {
		t.Fatalf("stalled %v, fast in flight %d: every wait and slot should be ended", r.slow.Stalled(now), r.fast.Inflight())
	}
	if s := r.queue.Stats(); s.InUse != 0 || r.budget.InFlight() != 0 {
		t.Fatalf("queue slots in use %d, hedges in flight %d after the race; want both 0", s.InUse, r.budget.InFlight())
	}
}

// slowAttempts are the two ways a first attempt is late: its head came
// but no token yet, or no head at all (the hedge timer runs from the send).
var slowAttempts = []struct {
	name string
	mode slowMode
}{{"late stream", slowHeadThenHold}, {"hung head", slowNoHead}}

// TestHedgeSkippedWhileRequestsWait: with a request waiting in the model's
// queue, the late attempt is not hedged (the waiting request needs the
// capacity more), and it is served by its own backend when it answers.
func TestHedgeSkippedWhileRequestsWait(t *testing.T) {
	for _, sa := range slowAttempts {
		t.Run(sa.name, func(t *testing.T) {
			r := newHedgeRig(t, NewHedgeBudget(0.1, 1), 1)
			r.slowMode = sa.mode
			held, err := r.queue.Acquire(context.Background(), admission.Request{Tenant: "a"})
			if err != nil {
				t.Fatal(err)
			}
			defer held.Release()
			ctx, cancel := context.WithCancel(context.Background())
			waiting := make(chan error, 1)
			go func() { _, err := r.queue.Acquire(ctx, admission.Request{Tenant: "b"}); waiting <- err }()
			waitUntil(t, "a request to queue", func() bool { return r.queue.Stats().Queued == 1 })

			answers := r.send(500 * time.Millisecond)
			if r.slotAskedOrEnded(answers) {
				t.Fatal("a hedge got a slot while a request waited in the queue")
			}
			close(r.releaseSlow)
			body, res := r.answer(answers)
			if body != sseAnswer || res.Hedge != HedgeNoCapacity || res.Backend != r.slow || r.fastCalls.Load() != 0 {
				t.Fatalf("body %q hedge %d, fast backend called %d times; want the slow backend's stream, no hedge", body, res.Hedge, r.fastCalls.Load())
			}
			cancel()
			<-waiting
		})
	}
}

// TestHedgeSkippedWhenBudgetSpent: with no hedge allowed in flight, the
// late attempt is not hedged even though the pool is idle.
func TestHedgeSkippedWhenBudgetSpent(t *testing.T) {
	for _, sa := range slowAttempts {
		t.Run(sa.name, func(t *testing.T) {
			r := newHedgeRig(t, NewHedgeBudget(0.1, 0), 8) // 10% of 1 request in flight: none
			r.slowMode = sa.mode
			answers := r.send(500 * time.Millisecond)
			close(r.releaseSlow)
			body, res := r.answer(answers)
			if body != sseAnswer || res.Hedge != HedgeNoBudget || r.fastCalls.Load() != 0 || len(r.slotAsked) != 0 {
				t.Fatalf("body %q hedge %d, fast backend called %d times; want the slow backend's stream, no hedge", body, res.Hedge, r.fastCalls.Load())
			}
		})
	}
}

// TestHedgePreemptedByLiveRequest: a hedge in flight holds a spare slot; a
// live request that would have to wait for it takes it back, which
// cancels the hedge without charging its backend, and the first attempt
// still serves the client.
func TestHedgePreemptedByLiveRequest(t *testing.T) {
	r := newHedgeRig(t, NewHedgeBudget(0.1, 1), 1)
	hold := make(chan struct{})
	r.fastHold, r.fastGot = hold, make(chan struct{})
	answers := r.send(500 * time.Millisecond)
	if !r.slotAskedOrEnded(answers) {
		t.Fatal("the idle queue refused the hedge a spare slot")
	}
	select {
	case <-r.fastGot:
	case a := <-answers:
		t.Fatalf("the request ended before the hedge reached its backend: %q, %v", a.body, a.err)
	}
	live, err := r.queue.Acquire(context.Background(), admission.Request{Tenant: "a"})
	if err != nil {
		t.Fatalf("the live request was not granted the hedge's slot: %v", err)
	}
	defer live.Release()
	close(r.releaseSlow)
	body, res := r.answer(answers)
	close(hold)
	if body != sseAnswer || res.Hedge != HedgeLost || res.Backend != r.slow {
		t.Fatalf("body %q hedge %d backend %v; want the first attempt's stream", body, res.Hedge, res.Backend)
	}
	waitUntil(t, "the hedge to be ended", func() bool { return r.fast.Inflight() == 0 })
	if r.fast.Failures() != 0 {
		t.Fatalf("the preempted hedge's backend got %d failures", r.fast.Failures())
	}
}

func TestHedgeBudgetShareOfRequestsInFlight(t *testing.T) {
	b := NewHedgeBudget(0.1, 2)
	for range 40 {
		b.begin()
	}
	n := 0
	for b.take() {
		n++
	}
	if n != 4 {
		t.Fatalf("%d hedges allowed with 40 requests in flight; want 10%% = 4", n)
	}
	for range 40 {
		b.end()
	}
	b.give()
	b.give()
	b.give()
	if !b.take() || b.take() {
		t.Fatal("with no request in flight the floor (2) should bound hedges in flight")
	}
}

// waitUntil polls cond (state another goroutine settles right after the
// response ended); it bounds the wait only to fail a broken build.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHedgeAtOnceOnBackendSlowerThanTheDelay: a first attempt sent to a
// backend whose typical time to first token (500ms) is already past the
// hedge delay (50ms) is hedged at once, not after the delay: waiting would
// only add the delay to the stream's start. On a backend as fast as the
// delay, the timer keeps the delay.
func TestHedgeAtOnceOnBackendSlowerThanTheDelay(t *testing.T) {
	r := newHedgeRig(t, NewHedgeBudget(0.1, 1), 8)
	r.slow.FirstTokenOf(r.clock.Now(), 500*time.Millisecond, endpoint.Wait{})
	body, res := r.answer(r.send(0))
	if body != sseAnswer || res.Hedge != HedgeWon || res.Backend != r.fast {
		t.Fatalf("body %q hedge %d backend %v; want the fast backend's stream by a hedge", body, res.Hedge, res.Backend)
	}
	if d := <-r.delays; d != 0 {
		t.Fatalf("hedge delay on a backend typically 500ms to first token = %v, want 0 (at once)", d)
	}

	r2 := newHedgeRig(t, NewHedgeBudget(0.1, 1), 8)
	r2.slow.FirstTokenOf(r2.clock.Now(), 40*time.Millisecond, endpoint.Wait{})
	r2.answer(r2.send(50 * time.Millisecond))
	if d := <-r2.delays; d != 50*time.Millisecond {
		t.Fatalf("hedge delay on a backend typically 40ms to first token = %v, want the request's 50ms", d)
	}
}

// TestHedgeAtOnceOnBackendFoundSlowBeforeItsTypicalLatency: a backend
// whose typical time to first token is still below the delay (a dozen slow
// answers move it by half) is hedged at once as soon as two answers in a
// row were slow (its settled latency, as routing judges an outlier), its
// last answer took more than twice the delay (a hedge at the delay would
// have started first: the stream after a slow engine's first slow answer),
// or while a stream there has waited longer than the delay with no first
// token since (it just turned slow); one spike under twice the delay is
// not enough.
func TestHedgeAtOnceOnBackendFoundSlowBeforeItsTypicalLatency(t *testing.T) {
	delay := func(name string, prime func(r *hedgeRig)) time.Duration {
		t.Helper()
		r := newHedgeRig(t, NewHedgeBudget(0.1, 1), 8)
		prime(r)
		if typ := r.slow.TypicalLatency(); typ >= 50*time.Millisecond {
			t.Fatalf("%s: setup: typical latency %v, want it below the 50ms delay", name, typ)
		}
		r.answer(r.send(0))
		return <-r.delays
	}
	twoSlow := func(r *hedgeRig) {
		for _, d := range []time.Duration{20, 200, 200} {
			r.slow.FirstTokenOf(r.clock.Now(), d*time.Millisecond, endpoint.Wait{})
		}
	}
	if d := delay("two slow answers", twoSlow); d != 0 {
		t.Fatalf("hedge delay after two slow answers in a row = %v, want 0 (at once)", d)
	}
	oneSlow := func(r *hedgeRig) {
		for _, d := range []time.Duration{20, 20, 200} {
			r.slow.FirstTokenOf(r.clock.Now(), d*time.Millisecond, endpoint.Wait{})
		}
	}
	if d := delay("one answer over twice the delay", oneSlow); d != 0 {
		t.Fatalf("hedge delay after one answer of 200ms (delay 50ms) = %v, want 0 (at once)", d)
	}
	spike := func(r *hedgeRig) {
		for _, d := range []time.Duration{20, 20, 90} {
			r.slow.FirstTokenOf(r.clock.Now(), d*time.Millisecond, endpoint.Wait{})
		}
	}
	if d := delay("one spike", spike); d != 50*time.Millisecond {
		t.Fatalf("hedge delay after one spike of 90ms = %v, want the request's 50ms", d)
	}
	spikeThenFast := func(r *hedgeRig) {
		for _, d := range []time.Duration{20, 200, 20} {
			r.slow.FirstTokenOf(r.clock.Now(), d*time.Millisecond, endpoint.Wait{})
		}
	}
	if d := delay("a spike, then a fast answer", spikeThenFast); d != 50*time.Millisecond {
		t.Fatalf("hedge delay after a 200ms spike followed by a 20ms answer = %v, want the request's 50ms", d)
	}
	stalled := func(r *hedgeRig) {
		r.slow.FirstTokenOf(r.clock.Now(), 20*time.Millisecond, endpoint.Wait{})
		r.clock.Advance(10 * time.Millisecond)
		r.slow.StartWaitingOf(r.clock.Now(), endpoint.Wait{}) // a stream sent before, still without a token
		r.clock.Advance(60 * time.Millisecond)
	}
	if d := delay("stalled", stalled); d != 0 {
		t.Fatalf("hedge delay with a stream waiting 60ms for its first token = %v, want 0 (at once)", d)
	}
}

// TestNoProbeOfSlowBackendWithoutRescue: a stream whose first pick is a
// backend known slower than the hedge delay goes to another backend with
// room when no hedge could start at once (here a request waits in the
// model's queue, so no spare slot): without the hedge, its client would
// wait the slow backend's whole first token. With a spare slot, the slow
// backend is still tried (a probe), hedged at once.
func TestNoProbeOfSlowBackendWithoutRescue(t *testing.T) {
	r := newHedgeRig(t, NewHedgeBudget(0.1, 1), 1)
	for range 3 {
		r.slow.FirstTokenOf(r.clock.Now(), 500*time.Millisecond, endpoint.Wait{})
	}
	held, err := r.queue.Acquire(context.Background(), admission.Request{Tenant: "a"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() { _, err := r.queue.Acquire(ctx, admission.Request{Tenant: "b"}); waiting <- err }()
	waitUntil(t, "a request to queue", func() bool { return r.queue.Stats().Queued == 1 })

	answers := r.post()
	select {
	case <-r.slowGot:
		close(r.releaseSlow) // lets the request end
		cancel()
		held.Release()
		t.Fatal("the stream went to the slow backend with no spare slot for a hedge")
	case a := <-answers:
		res := <-r.results
		if a.err != nil || a.body != sseAnswer || res.Backend != r.fast {
			t.Fatalf("body %q err %v backend %v; want the fast backend's stream", a.body, a.err, res.Backend)
		}
	}
	cancel()
	<-waiting
	held.Release()
	for len(r.delays) > 0 { // the fast stream's own (unfired) timer
		<-r.delays
	}

	body, res := r.answer(r.send(0))
	if d := <-r.delays; body != sseAnswer || res.Hedge != HedgeWon || d != 0 {
		t.Fatalf("body %q hedge %d delay %v; want the slow backend probed and hedged at once", body, res.Hedge, d)
	}
}

// A first attempt held to a first-token bound whose backend sends a
// keep-alive comment (": ping", as a hosted API does while the request
// queues) and no token has not won the race: the hedge goes when its delay passes, and the client gets
// the hedge's stream. Before, the ping was taken for the first token:
// the race ended on it and the client waited on the queueing backend.
func TestHedgeRacesAPingingStream(t *testing.T) {
	r := newHedgeRig(t, NewHedgeBudget(0.1, 1), 8)
	r.slowMode, r.firstToken = slowPingThenHold, 30*time.Second // the bound is never reached here
	answers := r.post()
	select {
	case <-r.slowGot:
	case a := <-answers:
		t.Fatalf("the request ended before reaching the slow backend: %q, %v", a.body, a.err)
	}
	<-r.slowRead.Passed() // the ping was read past: by the race's peek, or (before) the relay
	r.clock.Advance(500 * time.Millisecond)
	select {
	case r.fire <- r.clock.Now():
	case <-time.After(time.Minute): // the race is over: it took the ping for a token
		close(r.releaseSlow)
		<-answers
		<-r.results
		t.Fatal("the race ended on the ping: no hedge was sent")
	}
	body, res := r.answer(answers)
	if body != sseAnswer || res.Hedge != HedgeWon || res.Backend != r.fast || res.Err != nil {
		t.Fatalf("body %q hedge %d backend %v err %v; want the fast backend's stream by a hedge", body, res.Hedge, res.Backend, res.Err)
	}
	waitUntil(t, "the loser to be ended", func() bool { return r.slow.Inflight() == 0 && r.queue.Stats().InUse == 0 })
}
