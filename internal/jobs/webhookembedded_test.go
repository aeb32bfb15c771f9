package jobs

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// openUnclosed opens a Store whose Close may fail (its server is gone
// before it, as when its process is killed) and closes it at the end.
func openUnclosed(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// finishedBy makes j finished with its webhook pending under s, as if s
// had died between the job's end and its webhook.
func finishedBy(t *testing.T, s *Store, j *Job) {
	t.Helper()
	if _, _, err := s.transition(context.Background(), singleKey(j.ID), func(r *jobRecord) error {
		r.Job.Status, r.Job.FinishedAt = StatusSucceeded, s.now().Unix()
		r.HookOwner = s.owner
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A gateway running the embedded NATS server is killed (its server gone
// with it, its heartbeat and sweep lease left current) and restarted on
// the same store: the new process resends the dead one's pending webhook
// at once, without the clock moving. A process that wrote over the
// network (a `sluice worker`) keeps its lease: its webhook waits for it.
// Before, the restarted gateway waited out its predecessor's lease too
// (30 s and a sweep, measured through the binary).
func TestWebhookOfKilledEmbeddedHostResentAtOnce(t *testing.T) {
	dir := t.TempDir()
	c := newClock()
	target := newHookCounts(t, nil)
	first, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.Shutdown)
	// The killed gateway: in process with the first run of the server,
	// holding the sweep lease, with a pending webhook.
	a := openUnclosed(t, hookedOptions(first.ClientURL(), func(o *Options) {
		o.Embedded, o.Now = first, c.Now
		o.WebhookSweepInterval = time.Hour // renews nothing during the test
	}))
	// A worker on the network, silent from now on (its lease is long).
	w := openUnclosed(t, hookedOptions(first.ClientURL(), func(o *Options) {
		o.Now, o.WebhookLease, o.WebhookSweepInterval = c.Now, 3*time.Hour, time.Hour
	}))
	if ok, err := a.hooks.takeSweepLease(t.Context()); err != nil || !ok {
		t.Fatalf("the first gateway takes the sweep lease: %v %v", ok, err)
	}
	ja, jw := submitHooked(t, a, target.URL+"/hook"), submitHooked(t, w, target.URL+"/hook")
	finishedBy(t, a, ja)
	finishedBy(t, w, jw)
	first.Shutdown() // the kill: nothing of a is deleted

	second, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Shutdown)
	b := openStore(t, hookedOptions(second.ClientURL(), func(o *Options) { o.Embedded, o.Now = second, c.Now }))
	var calls atomic.Int64
	startWorker(t, b, WorkerOptions{Executor: okExec(&calls)})
	waitWebhook(t, b, ja.ID, "delivered") // the clock has not moved
	waitSweeps(t, b, 3)
	if n, m := target.count(ja.ID), target.count(jw.ID); n != 1 || m != 0 {
		t.Fatalf("deliveries: the dead gateway's %d (want 1), the worker's %d within its lease (want 0)", n, m)
	}
	c.Advance(3*time.Hour + time.Second)
	waitWebhook(t, b, jw.ID, "delivered")
	if n := target.count(jw.ID); n != 1 {
		t.Fatalf("the worker's webhook delivered %d times past its lease, want 1", n)
	}
}
