package jobs

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The window the chaos suite's gateway-sigkill fell into about once in a
// hundred runs: the gateway delivers a job's webhook, the receiver
// answers 2xx, and the process is killed before it records the delivery.
// The restarted gateway cannot know the receiver had it, and sends it
// again: at least once. What it owes is one result: the same webhook-id
// (the job's id, which receivers deduplicate on) and the same body on
// both deliveries, the job not run again, its record delivered in the
// end. The old process's steps are taken by hand: the job finished under
// it (finishedBy), its webhook sent through its own queue, the receiver
// killing its server (the in-process NATS the process dies with) before
// it answers, so the record of the delivery is never written.
func TestWebhookAnsweredButUnrecordedAtKillResentOnce(t *testing.T) {
	dir := t.TempDir()
	c := newClock()
	first, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.Shutdown)

	type delivery struct {
		id   string
		body []byte
	}
	var mu sync.Mutex
	var got []delivery
	var killed atomic.Bool
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, delivery{r.Header.Get("webhook-id"), body})
		mu.Unlock()
		if killed.CompareAndSwap(false, true) {
			first.Shutdown() // the kill, before the 2xx reaches the old process
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(recv.Close)

	a := openUnclosed(t, hookedOptions(first.ClientURL(), func(o *Options) {
		o.Embedded, o.Now = first, c.Now
		o.WebhookSweepInterval = time.Hour // no sweep of its own during the test
	}))
	j := submitHooked(t, a, recv.URL+"/hook")
	finishedBy(t, a, j)
	rec, _, err := a.getJob(t.Context(), singleKey(j.ID))
	if err != nil {
		t.Fatal(err)
	}
	a.hooks.notify(rec) // as the write that finished it does
	eventually(t, "the first delivery", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1
	})

	second, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Shutdown)
	b := openStore(t, hookedOptions(second.ClientURL(), func(o *Options) { o.Embedded, o.Now = second, c.Now }))
	var calls atomic.Int64
	startWorker(t, b, WorkerOptions{Executor: okExec(&calls)})
	waitWebhook(t, b, j.ID, "delivered") // the clock has not moved
	waitSweeps(t, b, 3)

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("%d deliveries, want 2 (the answered one and the restarted gateway's resend)", len(got))
	}
	for i, d := range got {
		if d.id != j.ID {
			t.Errorf("delivery %d: webhook-id %q, want the job id %q", i+1, d.id, j.ID)
		}
	}
	if !bytes.Equal(got[0].body, got[1].body) {
		t.Errorf("the resend's body differs (two results for one job):\n%s\n%s", got[0].body, got[1].body)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the finished job ran %d times after the restart, want 0", n)
	}
}
