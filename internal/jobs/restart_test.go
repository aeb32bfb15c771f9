package jobs

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// attrLog keeps a logger's lines at warn and above with their attributes.
type attrLog struct{ lineLog }

func (l *attrLog) Handle(_ context.Context, r slog.Record) error {
	line := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	return nil
}
func (l *attrLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *attrLog) WithGroup(string) slog.Handler      { return l }

// jsAPIWorkers counts nats-server's JetStream API workers running in
// this process: GOMAXPROCS (at most 16) per JetStream start.
func jsAPIWorkers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("processJSAPIRoutedRequests")) {
			count++
		}
	}
	return count
}

// TestRecoveryRestartsLeaveNoGoroutines: a disk fault's recovery restarts
// the embedded server five times, real restarts, with a job running
// across the first. Before, each restart of JetStream in process left
// GOMAXPROCS JetStream API workers behind (they end only with the
// server), and back to back the race detector found nats-server racing
// with itself. Now the count is the one server's, the store serves after
// each restart through both its connections (a client over TCP, as
// `sluice worker`, submits, the gateway's in-process one runs the jobs),
// every job runs exactly once (the one in flight at the first restart
// too), and a webhook claim of this run still holds (it names the run,
// which the new server keeps, not the server's id, which it draws anew).
func TestRecoveryRestartsLeaveNoGoroutines(t *testing.T) {
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Port: -1, RecoverEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	logs := &attrLog{}
	o := testOptions(e.ClientURL())
	o.Embedded, o.Logger = e, slog.New(logs)
	s := openStore(t, o)
	remote := openStore(t, testOptions(e.ClientURL()))
	ctx := context.Background()

	var calls atomic.Int64
	running, release := make(chan string, 1), make(chan struct{})
	exec := execFunc(func(ctx context.Context, j *Job) (Result, error) {
		calls.Add(1)
		if strings.Contains(string(j.Body), `"hold"`) {
			running <- j.ID
			<-release
		}
		return Result{StatusCode: 200, RequestID: "req-" + j.ID, Body: []byte(`{"ok":true}`)}, nil
	})
	startWorker(t, s, WorkerOptions{Concurrency: 2, Executor: exec})
	submitDone := func(body string) string {
		t.Helper()
		var j *Job
		eventually(t, "a job accepted", func() bool {
			j, _, err = remote.Submit(ctx, Spec{Tenant: "acme", Path: "/v1/chat/completions", Model: "m", Body: []byte(body)})
			return err == nil
		})
		return j.ID
	}
	waitDone := func(id string) {
		t.Helper()
		eventually(t, "job "+id+" succeeded", func() bool {
			j, err := s.Job(ctx, "acme", id)
			return err == nil && j.Status == StatusSucceeded
		})
	}
	waitDone(submitDone(`{"model":"m","n":0}`))
	workers := jsAPIWorkers()
	if workers == 0 {
		t.Fatal("no JetStream API worker found: the count cannot tell a leak")
	}

	// A webhook claim written through the first server: this process's.
	claimedAt := time.Now()
	claim := s.webhookClaim(claimedAt)
	oldID := e.server().ID()

	held := submitDone(`{"model":"m","hold":true}`)
	<-running
	const restarts = 5
	ids := []string{held}
	for i := range restarts {
		// A fault as nats-server's first line about a failed write begins it.
		e.noteServerLine("Critical write error: test")
		if !e.TryRecover() {
			t.Fatalf("restart %d: not recovered: %v", i, e.StoreFault())
		}
		if i == 0 {
			close(release)
		}
		id := submitDone(`{"model":"m","n":` + string(rune('1'+i)) + `}`)
		waitDone(id)
		ids = append(ids, id)
	}
	waitDone(held)
	if got := jsAPIWorkers(); got != workers {
		t.Errorf("JetStream API workers: %d before %d restarts, %d after; want as many", workers, restarts, got)
	}
	// The restarts drew new server ids; the run's claims still hold, for
	// the gateway and for a worker over TCP; another run's do not.
	if e.server().ID() == oldID {
		t.Error("the server id did not change: was the server restarted?")
	}
	for name, st := range map[string]*Store{"in-process": s, "tcp": remote} {
		if st.claimLapsed(claim, claimedAt) {
			t.Errorf("%s: this run's claim lapsed after the restarts", name)
		}
		other := claim
		other.Via = "sluice-embedded-another-run"
		if !st.claimLapsed(other, claimedAt) {
			t.Errorf("%s: another run's claim held", name)
		}
	}
	// The worker's pulls out at each restart are answered 409 Server
	// Shutdown: a drop, as NATS away, not a warning each (2 per restart).
	if n := logs.count("Server Shutdown"); n != 0 {
		t.Errorf("%d warnings about pulls ended by the server's shutdown over %d restarts; want none: %q", n, restarts, logs.lines)
	}
	if e.StoreRecoveries() != restarts {
		t.Errorf("%d recoveries counted; want %d", e.StoreRecoveries(), restarts)
	}
	// Every job once: the first, the held one, one per restart.
	if got, want := calls.Load(), int64(len(ids)+1); got != want {
		t.Errorf("%d executions of %d jobs; want one each", got, want)
	}
	for _, id := range ids {
		j, err := s.Job(ctx, "acme", id)
		if err != nil || j.Attempts != 1 {
			t.Errorf("job %s: %+v, %v; want 1 attempt", id, j, err)
		}
	}
}
