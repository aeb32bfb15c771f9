package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// A cold gateway hit by a burst larger than its initial concurrency limit
// (64 clients, limit 4) against a fast backend answers every request: the
// queue's wait estimate is only the prior until a completion is measured,
// and a guess must not refuse (issue 12 saw 7 non-2xx at wrk's warm-up).
// The backend holds its first requests until the whole burst has arrived,
// so the burst meets a queue with nothing measured, whatever the machine's
// speed.
func TestColdBurstIsNotRefusedOnThePrior(t *testing.T) {
	const clients = 64
	release := make(chan struct{})
	var atBackend atomic.Int64
	simH := sim.New(sim.Config{Model: "m1", Instant: true})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atBackend.Add(1)
		<-release
		simH.ServeHTTP(w, r)
	}))
	t.Cleanup(be.Close)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // runs before be.Close: a failed test does not hang on held requests
	// A long objective (deadline 20s) so that a slow machine cannot make a
	// queued request miss it while the burst arrives; a large max_tokens
	// so that the prior still predicts minutes of wait for the burst.
	cfg := testConfig(be.URL)
	cfg.Admission.MaxWait = config.Duration(30 * time.Second)
	srv, gw := startGateway(t, cfg)
	admin := adminServer(t, gw).URL

	body := `{"model":"m1","messages":[{"role":"user","content":"hello there"}],"max_tokens":4000}`
	statuses := make(chan int, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				statuses <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	// Every request is at the backend, queued, or already answered.
	waitUntil(t, "the burst to arrive", func() bool {
		return atBackend.Load()+queuedNow(t, admin)+int64(len(statuses)) == clients
	})
	unblock()
	wg.Wait()
	close(statuses)
	refused := 0
	for s := range statuses {
		if s != http.StatusOK {
			refused++
		}
	}
	if refused > 0 {
		t.Fatalf("%d of %d requests of a cold burst were refused", refused, clients)
	}
}

// queuedNow is the sluice_queue_waiting gauge summed over its series, read
// from the admin listener's /metrics (0 before the first request creates
// the model's queue).
func queuedNow(t *testing.T, admin string) int64 {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text := readAll(t, resp)
	var n float64
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "sluice_queue_waiting{"); ok {
			v, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			n += v
		}
	}
	return int64(n)
}
