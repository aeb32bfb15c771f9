package app

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-gw/sluice/internal/sim"
)

// TestReloadsJoinRetiredRuntimesUnderLoad: serve → streams flowing → 20
// reloads, each retiring the runtime the streams ran on → the streams
// stop → goroutines back to where they were before serving, while the
// app still serves. A reload stops its retired runtime's call workers
// and joins them in the background (joinRetired): once the app reports
// every retired runtime joined (retiring.wait, what
// sluice_runtimes_retiring counts), none of their workers runs.
//
// This passes on the code before the join too (checked: 3 of 3 with the
// join reporting at once): Retire's close ends an idle worker at once and
// a busy one after its write, and on loopback no first write stays busy
// (a stream's first event is at most 256 KiB, and the kernel's buffers
// took 200 KiB for a client reading nothing). What the join adds, an
// owner that waits for a worker still busy and counts it meanwhile, is
// checked with a held call in proxy (TestForwarderWaitJoinsItsOwnWorkers).
//
// upstream_client: net/http, so the lean client's dials (a process-wide
// pool of call workers, kept across reloads) do not run on workers: the
// only call workers are the runtimes' own.
func TestReloadsJoinRetiredRuntimesUnderLoad(t *testing.T) {
	before := goleak.IgnoreCurrent()
	// At its end, after every other cleanup, nothing of the test's is left:
	// measured against the goroutines running at its start, not against
	// none (checkNoGoroutineLeftAtEnd): an earlier test's embedded NATS
	// server, still running when it began, failed it once in a full run.
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		if err := goleak.Find(append([]goleak.Option{before}, otherTestsGoroutines...)...); err != nil {
			t.Errorf("goroutines left at the end:\n%v", err)
		}
	})
	s := sim.New(sim.Config{Model: "m1", Instant: true})
	simSrv := httptest.NewServer(s)
	t.Cleanup(simSrv.Close)
	t.Cleanup(s.Close)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\nupstream_client: net/http\n%smodels:\n"+
		"  - name: m1\n    backends:\n      - url: %s\n", noProbes, simSrv.URL)
	writeFile(t, path, src)
	a := newApp(t, path)
	url, _, stop, done := runApp(t, a)
	defer func() {
		stop()
		if err := stopErr(t, <-done); err != nil {
			t.Fatal(err)
		}
	}()

	quit := make(chan struct{})
	var flow sync.WaitGroup
	for range 4 {
		flow.Go(func() {
			for {
				select {
				case <-quit:
					return
				default:
				}
				stream(url)
			}
		})
	}
	joined := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang's bound, not a timing
		defer cancel()
		if !a.retiring.wait(ctx) {
			t.Fatalf("%s: %d retired runtimes not joined after a minute", what, a.retiring.count())
		}
	}
	for i := range 20 {
		sendStreams(t, url, 2) // this runtime's workers ran first writes
		prev := a.gw.Runtime()
		if err := a.Reload(); err != nil {
			t.Fatal(err)
		}
		joined(fmt.Sprintf("reload %d", i+1))
		if n := prev.CallWorkers(); n != 0 {
			t.Errorf("reload %d: its retired runtime reported joined with %d call workers running", i+1, n)
		}
	}
	close(quit)
	flow.Wait()
	// The runtime the streams ended on retires too; the new one has
	// served nothing, so it has no worker.
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	joined("the last reload")
	http.DefaultClient.CloseIdleConnections()
	// goleak's retries give a worker that was counted out its return.
	if err := goleak.Find(before); err != nil && strings.Contains(err.Error(), "proxy.(*deepCalls)") {
		t.Errorf("call workers still running after every retired runtime was joined, before shutdown:\n%v", err)
	}
	if n := a.deps.Transport.Workers().Live(); n != 0 {
		t.Errorf("%d call workers counted live after every retired runtime was joined, want 0", n)
	}
}
