package app

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-gw/sluice/internal/testutil/leaktest"
)

// refreshBackend answers every request at once until hold is set; after
// that it holds each deterministic request (the stale-while-revalidate
// refresh) until the gateway cancels it. refreshing receives a value when
// a held refresh arrives; cut is set when its cancellation reached the
// backend. The hold is the test's to set, once the entry is known to be
// stored: the gateway stores a coalesced answer after the client has it,
// so a backend that held every request after the first could hold a
// second client request that arrived before the store (a MISS, ended
// 504), not a refresh.
func refreshBackend(t *testing.T) (url string, hold *atomic.Bool, refreshing chan struct{}, cut *atomic.Bool) {
	hold, refreshing, cut = &atomic.Bool{}, make(chan struct{}, 1), &atomic.Bool{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"shared"`) && hold.Load() {
			select {
			case refreshing <- struct{}{}:
			default:
			}
			<-r.Context().Done()
			cut.Store(true)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`)
	}))
	t.Cleanup(s.Close)
	return s.URL, hold, refreshing, cut
}

// writeRefreshConfig: entries are stale at once (ttl 1ms) and served stale
// for an hour while one background request refreshes them; shutdown
// grants grace for that long.
func writeRefreshConfig(t *testing.T, path, backend, grace string, models ...string) {
	t.Helper()
	src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\nshutdown_grace: %s\n"+
		"cache: {ttl: 1ms, stale_while_revalidate: 1h}\nmodels:\n", grace)
	for _, m := range models {
		src += fmt.Sprintf("  - name: %s\n    backends:\n      - url: %s\n", m, backend)
	}
	tmp := path + ".tmp"
	writeFile(t, tmp, src)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestShutdownJoinsBackgroundRefresh: serve → a stale hit starts a
// background refresh → reload → shutdown. The refresh outlives every
// handler; Run must not return while it runs: it waits the grace, cancels
// it and joins its goroutine, so nothing the gateway started is left.
func TestShutdownJoinsBackgroundRefresh(t *testing.T) {
	// Checked after every other cleanup (the backend's close included),
	// with no goroutine exempt: the test's own client connections are
	// closed first, so any connection goroutine left is the gateway's.
	checkNoGoroutineLeftAtEnd(t)
	before := goleak.IgnoreCurrent()
	backend, hold, refreshing, cut := refreshBackend(t)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	writeRefreshConfig(t, path, backend, "200ms", "m")
	url, stop, done := startApp(t, path)

	if x := detChat(t, url); x != "MISS" {
		t.Fatalf("first request: X-Cache %q, want MISS", x)
	}
	// The entry is stored once a request finds it: a HIT or STALE (a
	// stale one's refresh is answered at once, the hold not yet set), not
	// a MISS or a COALESCED follower of a flight yet to store it.
	eventually(t, "the entry stored", func() bool {
		x := detChat(t, url)
		return x == "HIT" || x == "STALE"
	})
	hold.Store(true)
	// Stale 1ms after it was stored: a stale hit starts a refresh, which
	// the backend now holds. Asked until one is held: a stale hit while a
	// refresh answered before the hold is still storing starts none. Each
	// request is sent on its own goroutine, not waited for once a request
	// is held upstream: in the last tenth of an entry's jittered
	// freshness, past the 1ms TTL, a client's request is a MISS
	// (Runtime.freshness), which the backend holds too; it ends with the
	// gateway's shutdown (clients.Wait below), and the test goes on as for
	// a held refresh (a rare run that exercises a held client request's
	// end at shutdown instead).
	var clients sync.WaitGroup
	deadline := time.Now().Add(30 * time.Second)
	for held := false; !held; {
		answered := make(chan struct{})
		clients.Add(1)
		go func() {
			defer clients.Done()
			defer close(answered)
			resp, err := http.Post(url+"/v1/chat/completions", "application/json",
				strings.NewReader(`{"model":"m","temperature":0,"messages":[{"role":"user","content":"shared"}]}`))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		select {
		case <-refreshing: // the refresh is upstream, with no handler waiting for it
			held = true
		case <-answered:
			if time.Now().After(deadline) {
				t.Fatal("timed out waiting for a refresh held upstream")
			}
			time.Sleep(20 * time.Millisecond) // pacing, as eventually's
		}
	}

	writeRefreshConfig(t, path, backend, "200ms", "m", "m2")
	eventually(t, "the reloaded config to serve m2", func() bool {
		code, _ := chat(url, "m2")
		return code == 200
	})

	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	clients.Wait() // answered, or cut as the gateway stopped
	// Checked again as Run returns, while the backend still runs: a
	// gateway goroutine that would end only when the backend goes away
	// (an upstream call nobody joined) shows here. The backend's own
	// goroutines (its listener, its connections, the held handler) and
	// the test client's are not the gateway's.
	http.DefaultClient.CloseIdleConnections()
	leaktest.VerifyNone(t, before,
		goleak.IgnoreAnyFunction("net/http/httptest.(*Server).goServe.func1"),
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"))
	if !cut.Load() {
		// Run returned, so the gateway's side of the refresh has ended;
		// the backend learns of the cancel from the closed connection.
		eventually(t, "the backend to see the refresh cancelled", cut.Load)
	}
}
