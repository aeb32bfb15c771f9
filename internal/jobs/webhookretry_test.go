package jobs

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// retryState is the job's webhook outcome as the record holds it.
func retryState(t *testing.T, s *Store, id string) (WebhookDelivery, int64) {
	t.Helper()
	j, err := s.Job(context.Background(), "acme", id)
	if err != nil {
		t.Fatal(err)
	}
	if j.WebhookState == nil {
		t.Fatal("no webhook state on the job")
	}
	return *j.WebhookState, j.FinishedAt
}

// waitRoundEnd waits until the record shows a round ended after more
// than attempts attempts: pending with a next attempt, or final.
func waitRoundEnd(t *testing.T, s *Store, id string, attempts int) WebhookDelivery {
	t.Helper()
	var st WebhookDelivery
	eventually(t, fmt.Sprintf("a round past %d attempts", attempts), func() bool {
		st, _ = retryState(t, s, id)
		return st.Attempts > attempts && (st.NextAttemptAt != 0 || st.Status != WebhookPending)
	})
	return st
}

// A receiver down for longer than the first round of attempts (here:
// the round's budget, a second) used to get its webhook recorded failed
// and never sent: a deploy of a minute lost every webhook due meanwhile.
// Now the round leaves it pending with its next attempt a minute (plus
// jitter) after the job finished; sweeps before then leave it alone, and
// the first sweep after it delivers it, with the same webhook-id.
//
// The budget is a failure-only bound, and the first 503's Retry-After
// (past the budget, before the first step) ends the round after one
// attempt: with a budget of a second, an attempt started near its end was
// cut on a slow machine before the receiver counted it, and the record's
// attempts were one more than the receiver saw.
func TestWebhookRetriedOnScheduleAfterReceiverDown(t *testing.T) {
	var up atomic.Bool
	target := newHookCounts(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			if n == 1 {
				w.Header().Set("Retry-After", "40")
			}
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	c := newClock()
	s, _ := newStore(t, func(o *Options) {
		o.WebhookSecret, o.AllowPrivateWebhooks, o.Now = []byte("s3cret"), true, c.Now
		o.WebhookSweepInterval, o.WebhookTimeout = 20*time.Millisecond, 30*time.Second
	})
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	j := submitHooked(t, s, target.URL+"/hook")

	st := waitRoundEnd(t, s, j.ID, 0)
	_, finished := retryState(t, s, j.ID)
	first := target.count(j.ID)
	if st.Status != WebhookPending || st.Attempts != first || first != 1 || st.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after the first round: %+v (receiver saw %d), want pending after 1 attempt, with the 503", st, first)
	}
	if off := st.NextAttemptAt - finished; off < 60 || off > 72 {
		t.Fatalf("next attempt %d s after the job finished, want 60..72 (1 min, jitter of a fifth)", off)
	}
	waitSweeps(t, s, 3)
	if n := target.count(j.ID); n != first {
		t.Fatalf("%d deliveries before the next attempt is due, want %d", n, first)
	}

	up.Store(true)
	c.Advance(time.Duration(st.NextAttemptAt-c.Now().Unix()+1) * time.Second)
	w := waitWebhook(t, s, j.ID, WebhookDelivered)
	if n := target.count(j.ID); n != first+1 {
		t.Fatalf("%d deliveries with this webhook-id, want %d (one retry)", n, first+1)
	}
	if w["attempts"] != float64(first+1) || w["next_attempt_at"] != nil {
		t.Fatalf("delivered: %v, want attempts %d and no next attempt", w, first+1)
	}
	if got := s.hooks.retries.Load(); got != 1 {
		t.Fatalf("retries scheduled %d, want 1", got)
	}
	if got := s.hooks.resends[resendDelivered].Load(); got != 1 {
		t.Fatalf("resends delivered %d, want 1", got)
	}
	if st := s.Stats(); st.WebhooksFailed != 0 || st.WebhooksSent != 1 {
		t.Fatalf("sent %d failed %d, want 1 and 0", st.WebhooksSent, st.WebhooksFailed)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the job ran %d times; only its webhook is retried", n)
	}
}

// A receiver that never comes back is tried on each step of the schedule,
// one attempt a step, and given up after the last (27 h 36 after the job
// finished, within the record's retention): failed, counted once.
//
// The round's budget is a failure-only bound: with a budget of a second,
// an attempt the budget cut (a slow machine) was counted on the record
// but never reached the receiver, and the receiver saw one delivery fewer
// than the record's attempts. The first answer's Retry-After, past the
// budget and before the first step, ends the first round after one
// attempt instead; the retries are one attempt each anyway.
func TestWebhookGivenUpAfterTheSchedule(t *testing.T) {
	target := newHookCounts(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "40")
		}
		w.WriteHeader(http.StatusBadGateway)
	})
	c := newClock()
	s, _ := newStore(t, func(o *Options) {
		o.WebhookSecret, o.AllowPrivateWebhooks, o.Now = []byte("s3cret"), true, c.Now
		o.WebhookSweepInterval, o.WebhookTimeout = 20*time.Millisecond, 30*time.Second
	})
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	j := submitHooked(t, s, target.URL+"/hook")

	st := waitRoundEnd(t, s, j.ID, 0)
	_, finished := retryState(t, s, j.ID)
	first := st.Attempts
	if first != 1 || target.count(j.ID) != 1 {
		t.Fatalf("first round: %d attempts, receiver saw %d; want 1 (its Retry-After is past the budget)", first, target.count(j.ID))
	}
	for i, off := range webhookRetryAt {
		if st.Status != WebhookPending {
			t.Fatalf("step %d: %+v, want pending", i, st)
		}
		if got := time.Duration(st.NextAttemptAt-finished) * time.Second; got < off || got > off+off/5+time.Second {
			t.Fatalf("step %d due %v after the finish, want %v plus at most a fifth of its gap", i, got, off)
		}
		c.Advance(time.Duration(st.NextAttemptAt-c.Now().Unix()+1) * time.Second)
		st = waitRoundEnd(t, s, j.ID, st.Attempts)
		if st.Attempts != first+i+1 {
			t.Fatalf("step %d: %d attempts, want %d (one a step)", i, st.Attempts, first+i+1)
		}
	}
	if st.Status != WebhookFailed || st.NextAttemptAt != 0 || st.StatusCode != http.StatusBadGateway {
		t.Fatalf("after the schedule: %+v, want failed with the 502", st)
	}
	if n := target.count(j.ID); n != first+len(webhookRetryAt) {
		t.Fatalf("%d deliveries, want %d", n, first+len(webhookRetryAt))
	}
	if got := s.Stats().WebhooksFailed; got != 1 {
		t.Fatalf("failed %d, want 1 (given up once)", got)
	}
	if got := s.hooks.resends[resendRescheduled].Load(); got != uint64(len(webhookRetryAt)-1) {
		t.Fatalf("rescheduled %d, want %d", got, len(webhookRetryAt)-1)
	}
	waitSweeps(t, s, 2) // the index key went with the final outcome: nothing more sent
	if n := target.count(j.ID); n != first+len(webhookRetryAt) {
		t.Fatalf("%d deliveries after giving up", n)
	}
}

// A 4xx other than 408 and 429 is the receiver's final word: failed at
// once, no retry scheduled.
func TestWebhookPermanentAnswerNotScheduled(t *testing.T) {
	target := newHookCounts(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusGone)
	})
	s, _ := newStore(t, func(o *Options) { o.WebhookSecret, o.AllowPrivateWebhooks = []byte("s3cret"), true })
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	j := submitHooked(t, s, target.URL+"/hook")
	w := waitWebhook(t, s, j.ID, WebhookFailed)
	if w["next_attempt_at"] != nil || s.hooks.retries.Load() != 0 || target.count(j.ID) != 1 {
		t.Fatalf("a 410: %v, %d retries scheduled, %d deliveries; want final after 1", w, s.hooks.retries.Load(), target.count(j.ID))
	}
}

// nextRetry follows the schedule from the job's finish, skips steps
// already past or before the receiver's Retry-After, and stops at the
// record's retention.
func TestNextRetrySchedule(t *testing.T) {
	s := &Store{o: Options{Retention: 7 * 24 * time.Hour, Rand: rand.Reader}}
	fin := time.Unix(1_700_000_000, 0)
	for range 200 {
		at, ok := s.nextRetry(fin, fin.Add(10*time.Second), fin)
		if !ok || at.Sub(fin) < time.Minute || at.Sub(fin) > time.Minute+12*time.Second {
			t.Fatalf("first step at %v, want 1 min + up to 12 s", at.Sub(fin))
		}
		at, ok = s.nextRetry(fin, fin.Add(10*time.Minute), fin.Add(10*time.Minute))
		if !ok || at.Sub(fin) < 36*time.Minute || at.Sub(fin) > 42*time.Minute {
			t.Fatalf("after 10 min: %v, want the 36 min step", at.Sub(fin))
		}
		at, ok = s.nextRetry(fin, fin.Add(10*time.Second), fin.Add(time.Hour))
		if !ok || at.Sub(fin) < 2*time.Hour+36*time.Minute {
			t.Fatalf("with Retry-After an hour: %v, want a step past it", at.Sub(fin))
		}
		if d := s.jitter(time.Second); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("jitter %v outside [0.5 s, 1 s]", d)
		}
	}
	if _, ok := s.nextRetry(fin, fin.Add(28*time.Hour), fin); ok {
		t.Fatal("past the last step: still scheduled")
	}
	// The jitter comes from Options.Rand: a source of zeros adds none.
	still := &Store{o: Options{Retention: 7 * 24 * time.Hour, Rand: zeroReader{}}}
	if at, _ := still.nextRetry(fin, fin.Add(10*time.Second), fin); !at.Equal(fin.Add(time.Minute)) {
		t.Fatalf("first step with no jitter at %v, want 1 min", at.Sub(fin))
	}
	if d := still.jitter(time.Second); d != time.Second {
		t.Fatalf("jitter with a source of zeros %v, want 1 s", d)
	}
	short := &Store{o: Options{Retention: time.Hour, Rand: rand.Reader}}
	if _, ok := short.nextRetry(fin, fin.Add(40*time.Minute), fin); ok {
		t.Fatal("a step past the record's retention was scheduled")
	}
}

// A sweep looks at webhookSweepMax records; webhooks waiting hours for
// their next attempt must not keep it from the rest. The next sweep
// starts where the last one stopped, so a due retry behind a full
// sweep's worth of waiting ones is sent by the second sweep. (Listed in
// the order written, as before, every sweep would read the same first
// webhookSweepMax records and never reach it.)
func TestSweepReachesRecordsPastItsBound(t *testing.T) {
	target := newHookCounts(t, nil)
	srv := startServer(t, t.TempDir())
	c := newClock()
	s := openStore(t, hookedOptions(srv.ClientURL(), func(o *Options) {
		o.Now, o.WebhookSweepInterval, o.WebhookLease = c.Now, time.Hour, 3*time.Hour
	}))
	waitSweeps(t, s, 1) // the one at open; the next is an hour away
	ctx := context.Background()
	put := func(id string, next time.Time) {
		r := jobRecord{Tenant: "acme", Webhook: target.URL + "/hook", Job: Job{ID: id, Status: StatusSucceeded,
			FinishedAt:   c.Now().Unix() - 60,
			WebhookState: &WebhookDelivery{Status: WebhookPending, Attempts: 5, NextAttemptAt: next.Unix()}}}
		b, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.jobs.Put(ctx, singleKey(id), b); err != nil {
			t.Fatal(err)
		}
		s.indexWebhook(ctx, id)
	}
	for i := range webhookSweepMax + 10 {
		put(fmt.Sprintf("job_a%04d", i), c.Now().Add(time.Hour))
	}
	put("job_zdue", c.Now().Add(-time.Second))
	queued := 0
	for range 2 {
		got, err := s.hooks.sweep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		queued += got.queued
	}
	if queued != 1 {
		t.Fatalf("two sweeps queued %d, want the due retry (1)", queued)
	}
	waitWebhook(t, s, "job_zdue", WebhookDelivered)
	if n := target.count("job_zdue"); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}
}

// A due retry is claimed once, even when its owner is alive and both
// processes saw the same owner: the first claim clears its time, so the
// second, made from the same reading, fails. Before, a claim only
// compared the owner, unchanged when the owner claims its own retry, and
// two sweepers that found it due both sent it.
func TestDueRetryClaimedOnce(t *testing.T) {
	srv := startServer(t, t.TempDir())
	c := newClock()
	slow := func(o *Options) { o.Now, o.WebhookSweepInterval, o.WebhookLease = c.Now, time.Hour, 3*time.Hour }
	a := openStore(t, hookedOptions(srv.ClientURL(), slow))
	b := openStore(t, hookedOptions(srv.ClientURL(), slow))
	ctx := context.Background()
	due := c.Now().Add(-time.Second).Unix()
	r := jobRecord{Tenant: "acme", Webhook: "http://127.0.0.1:9/hook", HookOwner: a.owner, Job: Job{ID: "job_due",
		Status: StatusSucceeded, FinishedAt: c.Now().Unix() - 60,
		WebhookState: &WebhookDelivery{Status: WebhookPending, Attempts: 5, NextAttemptAt: due}}}
	raw, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.jobs.Put(ctx, singleKey("job_due"), raw); err != nil {
		t.Fatal(err)
	}
	okA, errA := a.hooks.claimResend(ctx, "job_due", a.owner, due)
	okB, errB := b.hooks.claimResend(ctx, "job_due", a.owner, due)
	if errA != nil || errB != nil || !okA || okB {
		t.Fatalf("claims: owner %v (%v), other %v (%v); want only the first", okA, errA, okB, errB)
	}
	st, _ := retryState(t, a, "job_due")
	if st.NextAttemptAt != 0 || st.Status != WebhookPending {
		t.Fatalf("after the claim: %+v, want pending with no next attempt (being sent)", st)
	}
}

// zeroReader is a source of zero bytes: no jitter.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }
