package jobs

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// stallFirstClaim makes the first submit that claims an idempotency key
// on s stop right after its claim, before it writes anything of its job,
// until the returned release; claimedID receives the id it claimed.
// Later submits go through.
func stallFirstClaim(t *testing.T, s *Store) (claimedID <-chan string, release func()) {
	t.Helper()
	ids := make(chan string, 1)
	gate := make(chan struct{})
	var n atomic.Int64
	s.claimed = func(id string) {
		if n.Add(1) == 1 {
			ids <- id
			<-gate
		}
	}
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return ids, release
}

type submitResult struct {
	j        *Job
	existing bool
	err      error
}

func submitAsync(ctx context.Context, s *Store, sp Spec) <-chan submitResult {
	c := make(chan submitResult, 1)
	go func() {
		j, existing, err := s.Submit(ctx, sp)
		c <- submitResult{j, existing, err}
	}()
	return c
}

// awaitSubmit waits for a submit's result, moving the store's clock on by
// idemWait at each poll: a submit waiting on another's claim gives up its
// wait (and may take the claim over) only once the injected clock passed
// idemWait, never by the wall clock.
func awaitSubmit(t *testing.T, clk *clock, c <-chan submitResult) submitResult {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(time.Minute)
	for {
		select {
		case r := <-c:
			return r
		case <-tick.C:
			clk.Advance(idemWait)
		case <-deadline:
			t.Fatal("the submit did not return within a minute")
		}
	}
}

// recordBodies is an executor keeping the body each job ran with.
func recordBodies(ran *sync.Map, calls *atomic.Int64) Executor {
	return execFunc(func(ctx context.Context, j *Job) (Result, error) {
		calls.Add(1)
		ran.Store(j.ID, string(j.Body))
		return Result{StatusCode: 200, Body: []byte(`{}`)}, nil
	})
}

// TestIdempotencyClaimOfAnotherRequestNotTakenOver: a submit claims an
// Idempotency-Key and stalls before writing its job; a second submit with
// the key and another body is refused (ErrIdempotencyMismatch: the
// gateway's 422 idempotency_key_reused) at once, however long the clock
// runs on, and writes nothing under the first's id: the first, resumed,
// makes its job with its own body, which is what runs. Before, the second
// waited idemWait for the record, took the claim over and made the job
// under the first's id with its own body: it got 202 for that id, and the
// first, resumed, got the 422 instead (or, had it written its record
// first, its client would have polled the second request's answer).
func TestIdempotencyClaimOfAnotherRequestNotTakenOver(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, func(o *Options) { o.Now = clk.Now })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	claimedID, release := stallFirstClaim(t, s)

	first := spec("acme")
	first.IdempotencyKey = "report-42"
	first.Body = []byte(`{"model":"m1","messages":[{"role":"user","content":"report for March"}]}`)
	second := first
	second.Body = []byte(`{"model":"m1","messages":[{"role":"user","content":"report for April"}]}`)

	firstDone := submitAsync(ctx, s, first)
	id := <-claimedID

	r := awaitSubmit(t, clk, submitAsync(ctx, s, second))
	if !errors.Is(r.err, ErrIdempotencyMismatch) || r.j != nil {
		var got string
		if r.j != nil {
			got = r.j.ID
		}
		t.Fatalf("another body with a key claimed (job %s, its submit stalled): job %q existing=%v err %v; want ErrIdempotencyMismatch and no job",
			id, got, r.existing, r.err)
	}
	if _, err := s.bodies.Get(ctx, singleKey(id)); err == nil {
		t.Fatalf("the refused submit stored a body under the claimed id %s", id)
	}
	// A binary from before reads the claim's value as the job id.
	if e, err := s.idem.Get(ctx, idemKey("acme", first.IdempotencyKey)); err != nil || string(e.Value()) != id {
		t.Fatalf("the claim read as a KV entry: %v %v; want the value %s", e, err, id)
	}

	release()
	a := <-firstDone
	if a.err != nil || a.existing || a.j.ID != id {
		t.Fatalf("the stalled first submit, resumed: %+v existing=%v %v; want job %s made", a.j, a.existing, a.err, id)
	}
	var ran sync.Map
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: recordBodies(&ran, &calls)})
	eventually(t, "the job to succeed", func() bool { return mustJob(t, s, "acme", id).Status == StatusSucceeded })
	if body, _ := ran.Load(id); body != string(first.Body) || calls.Load() != 1 {
		t.Fatalf("job %s ran %d times, with %v; want once with the first request's body", id, calls.Load(), body)
	}
	// Afterwards: the first request replays its job, the other is refused.
	if j, existing, err := s.Submit(ctx, first); err != nil || !existing || j.ID != id {
		t.Fatalf("the first request resent: %+v existing=%v %v; want job %s", j, existing, err, id)
	}
	if _, _, err := s.Submit(ctx, second); !errors.Is(err, ErrIdempotencyMismatch) {
		t.Fatalf("the other request resent: %v; want ErrIdempotencyMismatch", err)
	}
}

// TestIdempotencyClaimOfSameRequestTakenOver: crash recovery stays. A
// submit claims a key and stalls (as if it died) before writing its job;
// the client's retry, the same request, waits idemWait on the injected
// clock, takes the claim over and makes the job under the claimed id.
// The stalled submit, resumed, finds that job made from its own request
// and returns it as existing; the job runs once.
func TestIdempotencyClaimOfSameRequestTakenOver(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, func(o *Options) { o.Now = clk.Now })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	claimedID, release := stallFirstClaim(t, s)
	sp := spec("acme")
	sp.IdempotencyKey = "retried-after-crash"

	firstDone := submitAsync(ctx, s, sp)
	id := <-claimedID
	r := awaitSubmit(t, clk, submitAsync(ctx, s, sp))
	if r.err != nil || r.existing || r.j == nil || r.j.ID != id {
		t.Fatalf("the same request retried on a lapsed claim of job %s: %+v existing=%v %v; want the job made under it", id, r.j, r.existing, r.err)
	}
	release()
	if a := <-firstDone; a.err != nil || !a.existing || a.j.ID != id {
		t.Fatalf("the stalled submit, resumed: %+v existing=%v %v; want job %s as existing", a.j, a.existing, a.err, id)
	}
	var ran sync.Map
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: recordBodies(&ran, &calls)})
	eventually(t, "the job to succeed", func() bool { return mustJob(t, s, "acme", id).Status == StatusSucceeded })
	if calls.Load() != 1 {
		t.Fatalf("job %s ran %d times, want once", id, calls.Load())
	}
}

// TestRefusedTakerLeavesTheClaim: a submit claims a key and stalls before
// writing its job; the client's retry (the same request) takes the lapsed
// claim over and is then refused (the store past its bound refuses its
// message). The claim stays, naming the stalled submit's id: that submit,
// resumed once there is room, makes its job, and a third submit with the
// key gets that job. Before, the refused taker purged the claim, and the
// third submit claimed the key anew and made a second job of the request.
func TestRefusedTakerLeavesTheClaim(t *testing.T) {
	srv := startBoundedServer(t, 128<<10)
	clk := newClock()
	o := testOptions(srv.ClientURL())
	o.Now = clk.Now
	s := openStore(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	claimedID, release := stallFirstClaim(t, s)
	sp := Spec{Tenant: "acme", Path: "/v1/chat/completions", Model: "m",
		Body: []byte(`{"model":"m","pad":"` + strings.Repeat("p", 8<<10) + `"}`), IdempotencyKey: "stalled-then-refused"}
	ik := idemKey("acme", sp.IdempotencyKey)

	firstDone := submitAsync(ctx, s, sp)
	id := <-claimedID
	// Just under the bound (as TestRefusedSubmitReleasesIdempotencyKey):
	// the taker's claim and body are stored, its message refused.
	fillStoreBelowBound(t, s, 1)
	r := awaitSubmit(t, clk, submitAsync(ctx, s, sp))
	if !errors.Is(r.err, ErrStoreFull) || !strings.Contains(r.err.Error(), "enqueueing") {
		t.Fatalf("the taker past the bound: %+v %v; want ErrStoreFull from enqueueing (after it took the claim)", r.j, r.err)
	}
	if e, err := s.idem.Get(ctx, ik); err != nil || string(e.Value()) != id {
		t.Fatalf("the claim after the taker's refusal: %v %v; want it kept for %s", e, err, id)
	}

	// Room again; the stalled submit resumes and makes its job.
	bodies, err := s.js.Stream(ctx, "KV_"+bodiesBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := bodies.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bodiesBucket+".pad.>")); err != nil {
		t.Fatal(err)
	}
	release()
	if a := <-firstDone; a.err != nil || a.existing || a.j.ID != id {
		t.Fatalf("the stalled submit, resumed: %+v existing=%v %v; want job %s made", a.j, a.existing, a.err, id)
	}
	j, existing, err := s.Submit(ctx, sp)
	if err != nil || !existing || j.ID != id {
		var got string
		if j != nil {
			got = j.ID
		}
		t.Fatalf("a third submit with the key: job %q existing=%v %v; want job %s replayed (not a second job)", got, existing, err, id)
	}
}

// TestTakeoverAfterOrphanDropStillRuns: a submit claims a key, publishes
// its job's message and dies before writing the record; a worker drops
// the message once it has waited orphanGrace for a record that never
// came (simulated here by deleting it, as the worker's Ack does). The
// client's retry, within the work stream's duplicate window (2 min, past
// orphanGrace's 1), takes the claim over for the dead submit's id: its
// publish, under the same Nats-Msg-Id, is dropped as a duplicate of the
// message that is gone. Before, the retry got 202 for a job whose record
// said queued and which no message would ever run (a refused taker that
// keeps its claim, claimfix, leads a retry to the same id the same way).
func TestTakeoverAfterOrphanDropStillRuns(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, func(o *Options) { o.Now = clk.Now })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	claimedID, release := stallFirstClaim(t, s)
	sp := spec("acme")
	sp.IdempotencyKey = "published-then-died"

	firstDone := submitAsync(ctx, s, sp)
	id := <-claimedID
	// What the dead submit stored of its job: its message, then gone.
	ack, err := s.enqueue(ctx, defaultClasses()[0], singleKey(id))
	if err != nil {
		t.Fatal(err)
	}
	work, err := s.js.Stream(ctx, workStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := work.DeleteMsg(ctx, ack.Sequence); err != nil {
		t.Fatal(err)
	}

	r := awaitSubmit(t, clk, submitAsync(ctx, s, sp))
	if r.err != nil || r.existing || r.j == nil || r.j.ID != id {
		t.Fatalf("the retry on the dead submit's claim of job %s: %+v existing=%v %v; want the job made under it", id, r.j, r.existing, r.err)
	}
	info, err := work.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// One, or two when the injected clock, moved on by idemWait at each
	// of awaitSubmit's polls, passed republishAfter during the retry's
	// write (the second is skipped: the job runs once, checked below).
	if info.State.Msgs == 0 {
		t.Fatalf("job %s is queued with no message in the work stream: no worker will ever run it", id)
	}
	var ran sync.Map
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: recordBodies(&ran, &calls)})
	eventually(t, "the job to succeed", func() bool { return mustJob(t, s, "acme", id).Status == StatusSucceeded })
	release()
	if a := <-firstDone; a.err != nil || !a.existing || a.j.ID != id {
		t.Fatalf("the stalled submit, resumed: %+v existing=%v %v; want job %s as existing", a.j, a.existing, a.err, id)
	}
	if calls.Load() != 1 {
		t.Fatalf("job %s ran %d times, want once", id, calls.Load())
	}
}
