package app

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// jobBackend answers chat completions and tells the test what it got, by
// the word the request's message holds: "hold" (a live request) and
// "job-a" block until the test releases them or their request ends;
// "job-b" is answered at once.
type jobBackend struct {
	*httptest.Server
	held, a, b    chan struct{} // one send per arrival
	aEnded        chan struct{} // job-a's request ended by its context (a cut)
	jobA, jobB    atomic.Int32
	releaseHold   func()
	releaseA      func()
	holdCh, relCh chan struct{}
}

func newJobBackend(t *testing.T) *jobBackend {
	t.Helper()
	be := &jobBackend{held: make(chan struct{}, 4), a: make(chan struct{}, 4), b: make(chan struct{}, 4),
		aEnded: make(chan struct{}, 4), holdCh: make(chan struct{}), relCh: make(chan struct{})}
	var holdOnce, relOnce sync.Once
	be.releaseHold = func() { holdOnce.Do(func() { close(be.holdCh) }) }
	be.releaseA = func() { relOnce.Do(func() { close(be.relCh) }) }
	be.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			io.WriteString(w, "ok")
			return
		}
		body, _ := io.ReadAll(r.Body)
		switch {
		case bytes.Contains(body, []byte("hold")):
			be.held <- struct{}{}
			select {
			case <-be.holdCh:
			case <-r.Context().Done():
				return
			}
		case bytes.Contains(body, []byte("job-a")):
			be.jobA.Add(1)
			be.a <- struct{}{}
			select {
			case <-be.relCh:
			case <-r.Context().Done():
				be.aEnded <- struct{}{}
				return
			}
		case bytes.Contains(body, []byte("job-b")):
			be.jobB.Add(1)
			be.b <- struct{}{}
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	// Before the server's Close, which waits for the blocked handlers.
	t.Cleanup(func() { be.releaseHold(); be.releaseA(); be.Close() })
	return be
}

// jobDrainConfig writes a gateway config with one in-process worker slot
// (a running job keeps the next one queued) on the queue in dataDir.
func jobDrainConfig(t *testing.T, be, grace, dataDir string, workerDisabled bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, path, fmt.Sprintf("listen: 127.0.0.1:0\nshutdown_grace: %s\nlog: {access: false}\n"+
		"queue: {data_dir: %s, workers: 1, worker_disabled: %t}\n"+noProbes+
		"models:\n  - name: m\n    backends:\n      - url: %s\n        max_concurrency: 8\n", grace, dataDir, workerDisabled, be))
	return path
}

// submitWord queues a chat completion whose message is word and returns
// the job's location.
func submitWord(t *testing.T, url, word string) string {
	t.Helper()
	body := `{"model":"m","messages":[{"role":"user","content":"` + word + `"}]}`
	code, h, b := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(body),
		"Prefer", "respond-async")
	if code != http.StatusAccepted {
		t.Fatalf("submit %s: %d %s", word, code, b)
	}
	return h.Get("Location")
}

// holdRequest sends a live request the backend holds until released: the
// drain lasts while it runs.
func holdRequest(url string) <-chan answer {
	out := make(chan answer, 1)
	go func() {
		resp, err := http.Post(url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hold"}]}`))
		if err != nil {
			out <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- answer{status: resp.StatusCode, body: b, err: err}
	}()
	return out
}

// jobsAfterRestart reads the jobs at locs through a gateway started on
// the same queue data with its worker disabled: what the stopped process
// left in the queue.
func jobsAfterRestart(t *testing.T, be, dataDir string, locs ...string) []map[string]any {
	t.Helper()
	url, _, cancel, done := runApp(t, newApp(t, jobDrainConfig(t, be, "1s", dataDir, true)))
	defer func() {
		cancel()
		if err := stopErr(t, <-done); err != nil {
			t.Error(err)
		}
	}()
	var out []map[string]any
	for _, loc := range locs {
		out = append(out, jobState(t, url, loc, ""))
	}
	return out
}

// From the first signal the in-process worker takes no new job; the one
// running finishes within the drain. A job runs on the backend until the
// test releases it, a second waits in the queue, a live request keeps the
// drain going; then the shutdown starts and the first job is released:
// it succeeds, once, and the worker stops with the second still queued
// (another replica, or the next start, runs it). Before, the worker took
// jobs until the drain ended: the second job ran on this process during
// the drain (the backend saw it, so the test fails at once), and any
// still running after the drain got 5 s and were cut, their work done
// again elsewhere.
func TestShutdownTakesNoNewJobs(t *testing.T) {
	be := newJobBackend(t)
	dataDir := t.TempDir()
	a := roomToStop(newApp(t, jobDrainConfig(t, be.URL, "1h", dataDir, false))) // jobsAfterRestart reads what its stop left
	url, _, cancel, done := runApp(t, a)
	stopRun := sync.OnceValue(func() error { cancel(); return <-done })
	defer func() { be.releaseHold(); stopRun() }()

	locA := submitWord(t, url, "job-a")
	<-be.a // running, in the only slot
	locB := submitWord(t, url, "job-b")
	held := holdRequest(url)
	<-be.held

	stopped := make(chan struct{})
	go func() { a.jobs.workerWG.Wait(); close(stopped) }()
	cancel() // SIGTERM: the drain lasts while the held request runs
	// Run sees the signal on its own goroutine: the first job is released
	// only once the shutdown has begun (drainJobs stops the taking under
	// jobsMu as it sets closing), or the worker could take the second in
	// between, as any process may before it has a signal.
	eventually(t, "the shutdown to begin", func() bool {
		a.jobsMu.Lock()
		defer a.jobsMu.Unlock()
		return a.closing
	})
	be.releaseA()
	// The worker stops once the running job is done (or, before, took
	// the queued one while the drain lasted).
	select {
	case <-be.b:
		t.Fatal("the worker took a new job during the drain")
	case <-stopped:
	}
	be.releaseHold()
	if h := <-held; h.err != nil || h.status != http.StatusOK {
		t.Fatalf("the live request: %d %v", h.status, h.err)
	}
	if err := stopRun(); err != nil {
		t.Fatal(err)
	}
	if na, nb := be.jobA.Load(), be.jobB.Load(); na != 1 || nb != 0 {
		t.Fatalf("backend saw job-a %d times and job-b %d times, want 1 and 0", na, nb)
	}
	got := jobsAfterRestart(t, be.URL, dataDir, locA, locB)
	if got[0]["status"] != "succeeded" || got[0]["attempts"] != float64(1) {
		t.Fatalf("the running job: %v, want succeeded after 1 attempt", got[0])
	}
	if got[1]["status"] != "queued" || got[1]["attempts"] != float64(0) {
		t.Fatalf("the queued job: %v, want still queued, no attempt", got[1])
	}
}

// A second signal (Cut) during the drain cuts a running job at once: its
// execution is cancelled and the job goes back to the queue, its attempt
// not counted. The grace is an hour and no live request holds the drain:
// only Cut ends the job (before: the drain ended at once, then the
// worker's fixed 5 s).
func TestCutRequeuesTheRunningJobs(t *testing.T) {
	be := newJobBackend(t)
	dataDir := t.TempDir()
	a := roomToStop(newApp(t, jobDrainConfig(t, be.URL, "1h", dataDir, false))) // jobsAfterRestart reads what its stop left
	url, _, cancel, done := runApp(t, a)
	stopRun := sync.OnceValue(func() error { cancel(); return <-done })
	defer stopRun()

	locA := submitWord(t, url, "job-a")
	<-be.a
	locB := submitWord(t, url, "job-b")
	cancel() // the first signal
	a.Cut()  // the second
	<-be.aEnded
	if err := stopRun(); err != nil {
		t.Fatal(err)
	}
	if na, nb := be.jobA.Load(), be.jobB.Load(); na != 1 || nb != 0 {
		t.Fatalf("backend saw job-a %d times and job-b %d times, want 1 and 0", na, nb)
	}
	got := jobsAfterRestart(t, be.URL, dataDir, locA, locB)
	for i, g := range got {
		if g["status"] != "queued" || g["attempts"] != float64(0) {
			t.Fatalf("job %d after the cut: %v, want queued with no attempt counted", i, g)
		}
	}
}
