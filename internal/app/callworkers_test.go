package app

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluice-gw/sluice/internal/sim"
)

// TestShutdownJoinsCallWorkers: serve → streams (each one's first write
// runs on a call worker, and the lean client's dials too: proxy's
// deepcall.go) → reload → streams on the new runtime → shutdown. When Run
// returns no call worker runs: the reload stopped the retired runtime's,
// shutdown the rest, and waited for them. Before, they ended on their own
// 1 s idle timer, joined by nobody, and were still running when Run
// returned (the streams' workers had been busy moments before).
//
// The check right after Run looks for the workers alone, at once;
// everything else the test leaves is checked with leaktest's patience at
// its end.
func TestShutdownJoinsCallWorkers(t *testing.T) {
	checkNoGoroutineLeftAtEnd(t)
	before := goleak.IgnoreCurrent()
	s := sim.New(sim.Config{Model: "m1", Instant: true})
	be := httptest.NewServer(s)
	t.Cleanup(be.Close)
	t.Cleanup(s.Close)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	writeConfig(t, path, "m1", be.URL)
	a := newApp(t, path)
	url, _, stop, done := runApp(t, a)
	workers := a.deps.Transport.Workers()

	sendStreams(t, url, 8)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	sendStreams(t, url, 8)

	// Streams keep coming until the listener closes, as in production:
	// the workers are busy up to the shutdown, not idle for most of their
	// 1 s timer.
	quit := make(chan struct{})
	var flow sync.WaitGroup
	for range 2 {
		flow.Go(func() {
			for {
				select {
				case <-quit:
					return
				default:
				}
				if !stream(url) {
					return // the listener closed (or the drain answered)
				}
			}
		})
	}
	stop()
	err := <-done
	close(quit)
	flow.Wait()
	if err := stopErr(t, err); err != nil {
		t.Fatal(err)
	}
	// goleak's retries give a worker ~0.4 s to end: one Run waited for
	// has only its return left, one nobody stopped lives up to its 1 s
	// idle timer.
	if err := goleak.Find(before); err != nil && strings.Contains(err.Error(), "proxy.(*deepCalls)") {
		t.Errorf("call workers still running after Run returned:\n%v", err)
	}
	if n := workers.Live(); n != 0 {
		t.Errorf("%d call workers counted live after Run returned, want 0", n)
	}
}

// stream sends one streaming chat request to url and reads it to its end:
// true for a 200 stream that ended with [DONE].
func stream(url string) bool {
	body := `{"model":"m1","stream":true,"max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return err == nil && resp.StatusCode == http.StatusOK && strings.Contains(string(b), "data: [DONE]")
}

// sendStreams sends n streaming chat requests at once to url and reads each
// to its end.
func sendStreams(t *testing.T, url string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if !stream(url) {
				t.Error("a stream did not end with [DONE]")
			}
		})
	}
	wg.Wait()
}
