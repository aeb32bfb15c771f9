package jobs

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// hookCounts is a webhook receiver that counts deliveries by webhook-id;
// answer (nil: 200) sees how many times this id came, this one included.
type hookCounts struct {
	*httptest.Server
	mu sync.Mutex
	n  map[string]int
}

func newHookCounts(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *hookCounts {
	h := &hookCounts{n: map[string]int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("webhook-id")
		io.Copy(io.Discard, r.Body) // else a client gone unnoticed: the context ends only after the body is read
		h.mu.Lock()
		h.n[id]++
		n := h.n[id]
		h.mu.Unlock()
		if answer != nil {
			answer(n, w, r)
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookCounts) count(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[id]
}

// hookedOptions signs webhooks, lets them reach loopback and sweeps often.
func hookedOptions(url string, tweak func(*Options)) Options {
	o := testOptions(url)
	o.WebhookSecret, o.AllowPrivateWebhooks = []byte("s3cret"), true
	o.WebhookSweepInterval = 20 * time.Millisecond
	if tweak != nil {
		tweak(&o)
	}
	return o
}

// waitSweeps waits for s to finish n more sweeps.
func waitSweeps(t *testing.T, s *Store, n uint64) {
	t.Helper()
	from := s.hooks.sweeps.Load()
	eventually(t, "sweeps", func() bool { return s.hooks.sweeps.Load() >= from+n })
}

// Two replicas on one NATS: A stops with its webhook in flight, B keeps
// running. B sends it, with the same webhook-id. Before, only a process
// starting its first worker resent: B, started earlier, never did, and
// the webhook waited for the next restart.
func TestWebhookOfStoppedReplicaResentByLiveOne(t *testing.T) {
	srv := startServer(t, t.TempDir())
	inFlight := make(chan struct{}, 1)
	target := newHookCounts(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 { // A's attempt: no answer before A stops
			inFlight <- struct{}{}
			<-r.Context().Done()
		}
	})
	var calls atomic.Int64
	b := openStore(t, hookedOptions(srv.ClientURL(), nil))
	// B sweeps; it takes only batch jobs, so A runs the job.
	startWorker(t, b, WorkerOptions{Executor: okExec(&calls), Classes: []string{"batch"}})
	waitSweeps(t, b, 1)
	a := openStore(t, hookedOptions(srv.ClientURL(), nil))
	startWorker(t, a, WorkerOptions{Executor: okExec(&calls)})
	j := submitHooked(t, a, target.URL+"/hook")
	<-inFlight
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	w := waitWebhook(t, b, j.ID, "delivered")
	if n := target.count(j.ID); n != 2 || w["attempts"] != 1.0 {
		t.Fatalf("%d deliveries of webhook-id %s, outcome %v; want A's cut short and B's", n, j.ID, w)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the job ran %d times; only its webhook is resent", n)
	}
	if n := b.hooks.resends[resendDelivered].Load(); n != 1 {
		t.Fatalf("resends delivered %d, want 1", n)
	}
}

// A replica whose heartbeat lapses (killed, or wedged) has its pending
// webhook resent by a live one once its lease has passed on the
// injected clock, and not before: a live sender is not duplicated.
func TestWebhookOfSilentReplicaResentAfterItsLease(t *testing.T) {
	srv := startServer(t, t.TempDir())
	c := newClock()
	inFlight := make(chan struct{}, 1)
	target := newHookCounts(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 { // A waits an hour to retry: pending, A's
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusServiceUnavailable)
			inFlight <- struct{}{}
		}
	})
	var calls atomic.Int64
	b := openStore(t, hookedOptions(srv.ClientURL(), func(o *Options) { o.Now = c.Now }))
	startWorker(t, b, WorkerOptions{Executor: okExec(&calls), Classes: []string{"batch"}})
	waitSweeps(t, b, 1)
	// A beats at its start and then not for an hour: as if killed.
	a := openStore(t, hookedOptions(srv.ClientURL(), func(o *Options) {
		o.Now, o.WebhookLease, o.WebhookSweepInterval, o.WebhookTimeout = c.Now, 3*time.Hour, time.Hour, 2*time.Hour
	}))
	startWorker(t, a, WorkerOptions{Executor: okExec(&calls)})
	j := submitHooked(t, a, target.URL+"/hook")
	<-inFlight
	waitSweeps(t, b, 3)
	if n := target.count(j.ID); n != 1 {
		t.Fatalf("%d deliveries while A's heartbeat is current, want 1 (A's)", n)
	}
	c.Advance(3*time.Hour + time.Second)
	waitWebhook(t, b, j.ID, "delivered")
	r, _, err := b.getJob(context.Background(), singleKey(j.ID))
	if err != nil {
		t.Fatal(err)
	}
	if r.HookOwner != b.owner {
		t.Fatalf("webhook owner %q, want B %q", r.HookOwner, b.owner)
	}
	waitSweeps(t, b, 3)
	if n := target.count(j.ID); n != 2 {
		t.Fatalf("%d deliveries, want 2 (A's 503, B's resend)", n)
	}
}

// Two processes sweeping at once resend a pending webhook once: the
// claim before the first attempt lets one through. Before, every process
// starting found it pending and sent it.
func TestWebhookResendClaimedOnce(t *testing.T) {
	srv := startServer(t, t.TempDir())
	release := make(chan struct{})
	target := newHookCounts(t, func(n int, w http.ResponseWriter, r *http.Request) {
		<-release // until both sweeps have looked
	})
	b := openStore(t, hookedOptions(srv.ClientURL(), nil))
	c := openStore(t, hookedOptions(srv.ClientURL(), nil))
	j := submitHooked(t, b, target.URL+"/hook")
	if _, _, err := b.transition(context.Background(), singleKey(j.ID), func(r *jobRecord) error {
		r.Job.Status, r.Job.FinishedAt = StatusSucceeded, b.now().Unix()
		r.HookOwner = "gone-process" // finished by a process that died
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, s := range []*Store{b, c} {
		wg.Go(func() {
			if _, err := s.hooks.sweep(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	close(release)
	waitWebhook(t, b, j.ID, "delivered")
	eventually(t, "both queues empty", func() bool { return !b.hooks.busy(j.ID) && !c.hooks.busy(j.ID) })
	if n := target.count(j.ID); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}
	if d := b.hooks.resends[resendDelivered].Load() + c.hooks.resends[resendDelivered].Load(); d != 1 {
		t.Fatalf("%d resends delivered, want 1", d)
	}
}

// A webhook delivered whose outcome the store refuses to record is not
// sent again by its own process: the outcome is held and written once
// there is room. Before, the record stayed pending and the webhook was
// sent again by the next resend.
func TestWebhookDeliveredOutcomeHeldNotResent(t *testing.T) {
	srv := startBoundedServer(t, 128<<10)
	c := newClock()
	inFlight, filled := make(chan struct{}, 1), make(chan struct{})
	target := newHookCounts(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 { // answered once the store refuses every write
			inFlight <- struct{}{}
			<-filled
		}
	})
	s := openStore(t, hookedOptions(srv.ClientURL(), func(o *Options) { o.Now = c.Now }))
	j := submitHooked(t, s, target.URL+"/hook")
	if _, _, err := s.transition(context.Background(), singleKey(j.ID), func(r *jobRecord) error {
		r.Job.Status, r.Job.FinishedAt = StatusSucceeded, s.now().Unix()
		r.HookOwner = "gone-process"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Queued by this sweep, or in a queue here already (alive): the
	// periodic sweep (every 20 ms) may have queued it first.
	if got, err := s.hooks.sweep(t.Context()); err != nil || got.queued+got.alive != 1 {
		t.Fatalf("sweep: %+v %v; want 1 queued", got, err)
	}
	<-inFlight
	fillStore(t, s)
	close(filled)
	held := func() bool {
		s.hooks.mu.Lock()
		defer s.hooks.mu.Unlock()
		return len(s.hooks.held) == 1
	}
	eventually(t, "the delivered outcome held", held)
	if w := webhookOf(t, s, j.ID); w["status"] != "pending" {
		t.Fatalf("webhook %v; want still pending on the record", w)
	}
	c.Advance(time.Hour) // past any lease: only the held outcome keeps it
	if got, err := s.hooks.sweep(t.Context()); err != nil || got.queued != 0 {
		t.Fatalf("sweep with the outcome held: %+v %v; want nothing queued", got, err)
	}
	bodies, err := s.js.Stream(t.Context(), "KV_"+bodiesBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := bodies.Purge(t.Context(), jetstream.WithPurgeSubject("$KV."+bodiesBucket+".fill.>")); err != nil {
		t.Fatal(err)
	}
	waitWebhook(t, s, j.ID, "delivered") // written again by the heartbeat loop
	if n := target.count(j.ID); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}
}
