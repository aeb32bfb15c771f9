package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A refusal behind a burst of its tenant's refusals, before any of them
// has come back or missed its appointment, is booked behind them (as
// clients that come back expect: the honesty test's retries are served
// because of it) and its message says so: Retry-After follows what the
// message states. Once appointments are missed the book counts only the
// share kept (admission.TestNoShowsDoNotPushTheBookOut): an operator's
// audit saw Retry-After: 300 with x-should-retry: false after a 400 req/s
// burst of one-shot clients, the message saying "estimated wait 628ms".
// On a frozen clock: one slot, held, its hold measured at 1 s.
func TestRefusalBehindABurstStatesItsPlaceInTheBook(t *testing.T) {
	arrived, next, stop := make(chan struct{}, 4), make(chan struct{}), make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		select { // one answer per send on next
		case <-next:
		case <-stop:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}`)
	}))
	t.Cleanup(be.Close)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	clk := &frozenClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv, gw := startGatewayWith(t, cfg, func(d *Deps) { d.Now = clk.Now })
	t.Cleanup(func() { close(stop) }) // before the gateway's own cleanup waits for its handlers
	q := gw.Runtime().Pools["m1"].queue
	reachBackend := func(ended <-chan outcome) {
		t.Helper()
		select {
		case <-arrived:
		case o := <-ended:
			t.Fatalf("a request ended before reaching the backend: status %d, err %v", o.status, o.err)
		}
	}
	warm := make(chan outcome, 1)
	postInBackground(srv.URL+"/v1/chat/completions", warm)
	reachBackend(warm)
	clk.Advance(time.Second)
	next <- struct{}{}
	if o := <-warm; o.err != nil || o.status != 200 {
		t.Fatalf("warm-up request: status %d, err %v", o.status, o.err)
	}
	waitFor(t, func() bool { return q.Stats().InUse == 0 })
	holder := make(chan outcome, 1)
	postInBackground(srv.URL+"/v1/chat/completions", holder)
	reachBackend(holder) // the only slot is taken

	send := func(i int) (*http.Response, string) {
		t.Helper()
		body := fmt.Sprintf(`{"model":"m1","messages":[{"role":"user","content":"burst %d"}],"max_tokens":4}`, i)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Sluice-Max-Wait", "50ms")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, readAll(t, resp)
	}
	// The burst: 150 distinct requests of one tenant, each refused, none
	// sent again (no client has been seen coming back), all within the
	// slot's hold.
	for i := range 150 {
		if resp, body := send(i); resp.StatusCode != 503 {
			t.Fatalf("burst request %d: status %d: %s", i, resp.StatusCode, body)
		}
	}
	resp, body := send(1000)
	if resp.StatusCode != 503 {
		t.Fatalf("fresh request: status %d: %s", resp.StatusCode, body)
	}
	_, code, msg := apiErr(t, body)
	if _, err := strconv.ParseInt(resp.Header.Get("Retry-After-Ms"), 10, 64); err != nil {
		t.Fatalf("retry-after-ms %q: %v", resp.Header.Get("Retry-After-Ms"), err)
	}
	if !strings.Contains(msg, "booked to come back first: retry after ") {
		t.Fatalf("refusal behind the burst (%s: %s): Retry-After %s; want the message to state its place in the book",
			code, msg, resp.Header.Get("Retry-After"))
	}
}
