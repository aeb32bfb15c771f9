package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// workerEdgeConfig writes a gateway config on the external queue at
// natsURL, running no job itself: a separate worker runs them through its
// admin listener.
func workerEdgeConfig(t *testing.T, be, natsURL string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, path, fmt.Sprintf("listen: 127.0.0.1:0\nshutdown_grace: 1h\nlog: {access: false}\nadmin: {token: %s}\n"+
		"queue: {url: %s, workers: 0, worker_disabled: true}\n"+noProbes+
		"models:\n  - name: m\n    backends:\n      - url: %s\n        max_concurrency: 8\n", testAdminToken, natsURL, be))
	return path
}

// adminPost sends a worker's job request to the admin listener.
func adminPost(t *testing.T, admin string) (int, http.Header, []byte) {
	t.Helper()
	return do(t, http.MethodPost, admin+"/worker/v1/chat/completions", "",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"job-b"}]}`),
		"Authorization", "Bearer "+testAdminToken, "X-Sluice-Job-Tenant", "acme")
}

// A separate worker runs jobs through a gateway that shuts down, then
// through the gateway started again on the same admin address. From the
// first signal the gateway refuses new jobs (/spare and the worker route
// answer 503 shutting_down): the worker takes none through it and backs
// off. The job running when the drain ends (here by Cut; shutdown_grace
// is an hour) is answered 503 shutting_down and goes back to the queue
// with no attempt counted, and runs once, later, through the new gateway:
// max_attempts is 1, so a counted attempt would have dead-lettered it.
// Before: the draining gateway took the new job (the backend saw job-b
// during the drain), and the running one ran on until Run returned and
// the admin listener was closed under it: a cut connection, the attempt
// counted, the job dead-lettered.
func TestWorkerJobsThroughAGatewayShuttingDown(t *testing.T) {
	nsrv, err := jobs.StartEmbedded(jobs.EmbeddedOptions{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsrv.Shutdown(); nsrv.WaitForShutdown() })
	be := newJobBackend(t)
	cfg := workerEdgeConfig(t, be.URL, nsrv.ClientURL())
	a := roomToStop(newApp(t, cfg)) // what its stop did to job-a is read
	_, admin, cancel, done := runApp(t, a)
	stopped := false
	defer func() {
		if !stopped {
			a.Cut()
			cancel()
			<-done
		}
	}()

	ctx := context.Background()
	ws, err := jobs.Open(ctx, jobs.Options{URL: nsrv.ClientURL(), Name: "test-worker", NoTracker: true, MaxAttempts: 1,
		BusyDelay: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	refused := make(chan struct{}, 1) // the gate was refused and backs off
	gate := &jobs.HTTPGate{Admin: admin, Token: testAdminToken, MaxBackoff: 50 * time.Millisecond,
		After: func(d time.Duration) <-chan time.Time {
			select {
			case refused <- struct{}{}:
			default:
			}
			return time.After(d)
		}}
	wctx, stopWorker := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() {
		wdone <- ws.RunWorker(wctx, jobs.WorkerOptions{Concurrency: 2, PollWait: 100 * time.Millisecond, Grace: time.Second,
			Executor: &jobs.HTTPExecutor{Admin: admin, Token: testAdminToken}, Gate: gate})
	}()
	defer func() { stopWorker(); <-wdone }()

	submit := func(word string) string {
		j, _, err := ws.Submit(ctx, jobs.Spec{Tenant: "acme", Path: "/v1/chat/completions", Model: "m", Class: "interactive",
			Body: json.RawMessage(`{"model":"m","messages":[{"role":"user","content":"` + word + `"}]}`)})
		if err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	idA := submit("job-a")
	<-be.a // running through the gateway

	cancel() // SIGTERM: the drain lasts an hour, or until Cut
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, h, b := adminPost(t, admin)
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(string(b), `"shutting_down"`) || h.Get("Retry-After") == "" {
				t.Fatalf("a new job on the draining gateway: %d %s (Retry-After %q)", code, b, h.Get("Retry-After"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the draining gateway still runs new jobs: %d %s", code, b)
		}
		<-be.b // the probe itself ran: drained from the backend's count below
		be.jobB.Add(-1)
	}
	for len(refused) > 0 { // a refusal seen before the job was queued
		<-refused
	}
	idB := submit("job-b")
	select {
	case <-be.b:
		t.Fatal("the worker ran a new job through the draining gateway")
	case <-refused: // asked /spare, was refused, backs off
	}

	a.Cut() // the drain's end
	<-be.aEnded
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	stopped = true
	rec := func(id string) *jobs.Job {
		j, err := ws.Job(ctx, "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	for deadline := time.Now().Add(30 * time.Second); rec(idA).Status == jobs.StatusRunning; {
		if time.Now().After(deadline) {
			t.Fatal("job-a still running after its gateway stopped")
		}
		time.Sleep(10 * time.Millisecond) // polling a record another process writes
	}
	if j := rec(idA); j.Status != jobs.StatusQueued || j.Attempts != 0 {
		t.Fatalf("job-a cut by the drain's end: %s after %d attempts (%+v), want queued with none counted", j.Status, j.Attempts, j.Error)
	}

	// The gateway starts again on the same admin address: the worker,
	// backing off while it was gone, runs both jobs through it.
	be.releaseA()
	b := newApp(t, cfg)
	if _, err := b.ListenAdmin(strings.TrimPrefix(admin, "http://")); err != nil {
		t.Fatal(err)
	}
	serveApp(t, b)
	for _, id := range []string{idA, idB} {
		for deadline := time.Now().Add(30 * time.Second); !rec(id).Status.Terminal(); {
			if time.Now().After(deadline) {
				t.Fatalf("job %s not run through the new gateway: %+v", id, rec(id))
			}
			time.Sleep(10 * time.Millisecond)
		}
		if j := rec(id); j.Status != jobs.StatusSucceeded || j.Attempts != 1 {
			t.Fatalf("job %s: %s after %d attempts, want succeeded after 1", id, j.Status, j.Attempts)
		}
	}
	if na, nb := be.jobA.Load(), be.jobB.Load(); na != 2 || nb != 1 {
		t.Fatalf("backend saw job-a %d times (cut once, run once) and job-b %d times, want 2 and 1", na, nb)
	}
}
