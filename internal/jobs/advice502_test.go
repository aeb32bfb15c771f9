package jobs

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestJob502RunsAgainNoSoonerThanAdvised: the gateway's 502 says when a
// backend of the pool is back (its Retry-After: the end of the earliest
// ejection when the failures left none usable). A worker sent the job
// back after its own retry delay regardless (2 s by default, 10 ms here):
// a run on a pool ejected for 10 s came back at 2 s and 6 s, each time a
// last-resort trial on the dead backend. Now the 502's Retry-After is the
// least wait, through the separate worker's HTTPExecutor (its answer's
// header) as through the in-process executor (gateway.TestJob502CarriesTheWait).
// The gateway here is a stub that answers 502 with Retry-After: 2 once,
// then 200; the test asserts only a lower bound on the gap between the
// two runs, which a loaded machine can only lengthen. Old code: ~10 ms.
func TestJob502RunsAgainNoSoonerThanAdvised(t *testing.T) {
	const advised = 2 * time.Second
	var mu sync.Mutex
	var runs []time.Time
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		runs = append(runs, time.Now())
		first := len(runs) == 1
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if first {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, `{"error":{"message":"the backend failed","type":"server_error","param":null,"code":"upstream_error"}}`)
			return
		}
		_, _ = io.WriteString(w, `{"id":"c","object":"chat.completion"}`)
	}))
	t.Cleanup(gw.Close)
	s, _ := newStore(t, nil) // RetryDelay 10 ms
	startWorker(t, s, WorkerOptions{Executor: &HTTPExecutor{Admin: gw.URL, Token: "tok"}})
	j, _, err := s.Submit(context.Background(), spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the job to succeed on its second run", func() bool {
		return mustJob(t, s, "acme", j.ID).Status == StatusSucceeded
	})
	mu.Lock()
	defer mu.Unlock()
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2", len(runs))
	}
	if gap := runs[1].Sub(runs[0]); gap < advised {
		t.Fatalf("the job ran again %v after the 502 that said Retry-After: 2, want no sooner", gap)
	}
}
