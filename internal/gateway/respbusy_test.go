package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// inFrontOf is a backend that serves as b does, except the requests
// intercept answers itself (it returns true for those): the owner of the
// responses made on it, with a fault or a hold of the test's.
func inFrontOf(t *testing.T, b *respBackend, intercept func(w http.ResponseWriter, body []byte) bool) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if intercept(w, body) {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		b.serve(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// responseOnOwner makes responses through the gateway's /v1/responses at
// url until one lands on the owner (backend "a", round robin over two)
// and returns its id.
func responseOnOwner(t *testing.T, url string) string {
	t.Helper()
	var id string
	for i := 0; i < 4 && !strings.HasPrefix(id, "resp_a_"); i++ {
		var r struct{ ID string }
		json.Unmarshal([]byte(readAll(t, post(t, url, `{"model":"m1","input":"one"}`))), &r)
		id = r.ID
	}
	if !strings.HasPrefix(id, "resp_a_") {
		t.Fatalf("no response made on the owner: last id %q", id)
	}
	return id
}

// wantNoContinuationOf fails the test if b was sent a continuation of
// the response id (made on another backend).
func (b *respBackend) wantNoContinuationOf(t *testing.T, id string) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, prev := range b.prev {
		if prev == id {
			t.Fatalf("the other backend was sent a continuation of %s (its previous ids %q)", id, b.prev)
		}
	}
}

// A continuation whose previous response lives on a backend at its limit
// waits for a slot there, or is refused 503 with Retry-After: never sent
// to another backend, which would answer that the response does not exist
// (the soak's one failure on 2026-12-05: a backend just re-added by a
// reload, at its slow-start limit, and the continuation's 400 from
// another). The owner here has max_concurrency 1, held by a request that
// blocks until released.
func TestResponsesContinuationWaitsForItsBackend(t *testing.T) {
	a, b := newRespBackend(t, "a"), newRespBackend(t, "b")
	held, release := make(chan struct{}), make(chan struct{})
	owner := inFrontOf(t, a, func(w http.ResponseWriter, body []byte) bool {
		if !bytes.Contains(body, []byte(`"input":"hold"`)) {
			return false
		}
		close(held)
		<-release
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, respObject("resp_a_held", true))
		return true
	})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free) // before the servers close (cleanups run last first): a failed test does not hang on the held request
	cfg := testConfig(owner.URL, b.srv.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	srv, _ := startGateway(t, cfg)
	url := srv.URL + "/v1/responses"

	id := responseOnOwner(t, url)
	cont := func(input string) string {
		return `{"model":"m1","input":"` + input + `","previous_response_id":"` + id + `"}`
	}
	holdDone := make(chan int, 1)
	go func() { // pinned to the owner: its one slot taken
		resp := post(t, url, cont("hold"))
		readAll(t, resp)
		holdDone <- resp.StatusCode
	}()
	<-held

	// A continuation that may wait 50 ms: refused, as saturated, with a
	// time to come back; the other backend never asked.
	resp := post(t, url, cont("more"), "X-Sluice-Max-Wait", "50ms")
	got := readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("continuation with the owner busy: %d (Retry-After %q) %s; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), got)
	}
	// One that may wait longer is served by the owner once it frees its
	// slot, whenever it was sent relative to the release.
	done := make(chan *http.Response, 1)
	go func() { done <- post(t, url, cont("later")) }()
	free()
	if code := <-holdDone; code != 200 {
		t.Fatalf("the held continuation: %d", code)
	}
	resp = <-done
	if got := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(got, `"id":"resp_a_`) {
		t.Fatalf("continuation after the release: %d %s; want the owner's answer", resp.StatusCode, got)
	}
	b.wantNoContinuationOf(t, id)
}

// A continuation whose first attempt on its backend fails is retried on
// that backend, or refused 502 with Retry-After: never retried on another,
// which would answer that the previous response does not exist (a false
// 404 the client cannot tell from the truth). The owner answers 502 once,
// then serves; or it is gone, refusing connections. Stored (the default),
// the continuation is retried only where the owner provably did not take
// it (proxy.Request.SideEffects): refused, it is; the owner's 502 is
// relayed as it is (it may have stored a response); not stored, the 502
// is retried on the owner.
func TestResponsesContinuationRetriesOnItsBackend(t *testing.T) {
	for _, tc := range []struct {
		name    string
		gone    bool // the owner refuses connections after the first response
		extra   string
		code    int
		replied string // what the answer holds
	}{
		{name: "502 once, not stored", extra: `,"store":false`, code: 200, replied: `"id":"resp_a_`},
		{name: "502 once, stored", code: http.StatusBadGateway},
		{name: "refused", gone: true, code: http.StatusBadGateway, replied: `"code":"upstream_unreachable"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newRespBackend(t, "a"), newRespBackend(t, "b")
			var mu sync.Mutex
			failed := false
			owner := inFrontOf(t, a, func(w http.ResponseWriter, body []byte) bool {
				mu.Lock()
				first := !failed && bytes.Contains(body, []byte(`"previous_response_id"`))
				failed = failed || first
				mu.Unlock()
				if first {
					w.WriteHeader(http.StatusBadGateway)
				}
				return first
			})
			srv, _ := startGateway(t, testConfig(owner.URL, b.srv.URL))
			url := srv.URL + "/v1/responses"

			id := responseOnOwner(t, url)
			if tc.gone {
				owner.Close()
			}
			resp := post(t, url, `{"model":"m1","input":"more","previous_response_id":"`+id+`"`+tc.extra+`}`)
			got := readAll(t, resp)
			if resp.StatusCode != tc.code || !strings.Contains(got, tc.replied) {
				t.Fatalf("continuation: %d %s; want %d with %s", resp.StatusCode, got, tc.code, tc.replied)
			}
			if tc.gone && resp.Header.Get("Retry-After") == "" { // the gateway's own 502
				t.Fatalf("continuation refused without Retry-After: %d %s", resp.StatusCode, got)
			}
			b.wantNoContinuationOf(t, id)
		})
	}
}

// A continuation waiting for a slot on its previous response's backend
// when that backend leaves the pool (a reload or discovery dropping it)
// is sent to no backend: the gateway answers it as OpenAI answers a
// previous_response_id it does not hold (400 previous_response_not_found
// naming the field), saying the backend left. Before 2026-12-06 it was
// routed on the pool serving now, and that backend's own 404 for an id
// it never held was relayed; before 2026-12-05 it went on waiting for
// the backend that had left.
func TestResponsesContinuationLeavesWithItsBackend(t *testing.T) {
	w := continuationWaitingOnItsOwner(t)
	gone, b, deps, gw, id, done := w.owner, w.other, w.deps, w.gw, w.id, w.done

	next := testConfig(b.srv.URL) // the owner dropped, as the app's install does
	rt, err := Build(next, deps, gw.Runtime())
	if err != nil {
		t.Fatal(err)
	}
	gw.Swap(rt)
	gone.Leave()

	resp := <-done
	wantPreviousLeft(t, "continuation waiting when its backend left", resp, id)
	b.wantNoContinuationOf(t, id)

	// One sent after the change is refused the same way, at routing.
	resp = post(t, w.url, `{"model":"m1","input":"after","previous_response_id":"`+id+`"}`)
	wantPreviousLeft(t, "continuation after its backend left", resp, id)
	b.wantNoContinuationOf(t, id)
}

// wantPreviousLeft fails the test unless resp is the gateway's 400 for a
// previous response whose backend left the pool.
func wantPreviousLeft(t *testing.T, what string, resp *http.Response, id string) {
	t.Helper()
	got := readAll(t, resp)
	var e struct {
		Error struct{ Message, Type, Code, Param string }
	}
	json.Unmarshal([]byte(got), &e)
	if resp.StatusCode != http.StatusBadRequest || e.Error.Code != "previous_response_not_found" ||
		e.Error.Param != "previous_response_id" || e.Error.Type != "invalid_request_error" ||
		!strings.Contains(e.Error.Message, id) || !strings.Contains(e.Error.Message, "left") {
		t.Fatalf("%s: %d %s; want 400 previous_response_not_found naming previous_response_id and %s, saying its backend left",
			what, resp.StatusCode, got, id)
	}
}

// A continuation waiting for a slot on its previous response's backend
// when a reload respecifies that backend (its max_concurrency raised, the
// pool's policy and weights changed: a new *Backend under the same name)
// is served there: the backend has not left. Before, the pin was dropped
// as if it had, and the new pool's pick (b, weight 100 to 1) answered 404
// for an id the owner still held.
func TestResponsesContinuationFollowsItsRespecifiedBackend(t *testing.T) {
	w := continuationWaitingOnItsOwner(t)
	old, owner, b, deps, gw, id, done := w.owner, w.ownerSrv, w.other, w.deps, w.gw, w.id, w.done

	next := testConfig(owner.URL, b.srv.URL)
	next.Models[0].Policy = "weighted"
	next.Models[0].Backends[0].MaxConcurrency = 2
	next.Models[0].Backends[0].Weight = 1
	next.Models[0].Backends[1].Weight = 100
	rt, err := Build(next, deps, gw.Runtime())
	if err != nil {
		t.Fatal(err)
	}
	if nb := backendNamed(rt.Pools["m1"].Backends, old.Name()); nb == nil || nb == old {
		t.Fatalf("the reload did not respecify the owner (%p, was %p)", nb, old)
	}
	gw.Swap(rt)

	resp := <-done
	if got := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(got, `"id":"resp_a_`) {
		t.Fatalf("continuation after its backend was respecified: %d %s; want the owner's answer", resp.StatusCode, got)
	}
	b.wantNoContinuationOf(t, id)
}

// waitingContinuation is a Responses continuation waiting for the one slot
// of its previous response's backend (the owner, max_concurrency 1, held
// by another continuation until the test ends) in front of a second
// backend: what a reload or the pool changing meets.
type waitingContinuation struct {
	owner    *endpoint.Backend // the owner in the pool serving at the start
	ownerSrv *httptest.Server  // the owner's server (in front of a)
	other    *respBackend      // the pool's second backend
	deps     Deps
	gw       *Gateway
	id       string              // the previous response's id, held by the owner
	url      string              // the gateway's /v1/responses
	done     chan *http.Response // the waiting continuation's answer
}

func continuationWaitingOnItsOwner(t *testing.T) *waitingContinuation {
	t.Helper()
	a, b := newRespBackend(t, "a"), newRespBackend(t, "b")
	held, release := make(chan struct{}), make(chan struct{})
	owner := inFrontOf(t, a, func(w http.ResponseWriter, body []byte) bool {
		if !bytes.Contains(body, []byte(`"input":"hold"`)) {
			return false
		}
		close(held)
		<-release
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, respObject("resp_a_held", true))
		return true
	})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free)
	cfg := testConfig(owner.URL, b.srv.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	var deps Deps
	srv, gw := startGatewayWith(t, cfg, func(d *Deps) { deps = *d })
	url := srv.URL + "/v1/responses"

	id := responseOnOwner(t, url)
	cont := func(input string) string {
		return `{"model":"m1","input":"` + input + `","previous_response_id":"` + id + `"}`
	}
	holdDone := make(chan struct{})
	go func() { readAll(t, post(t, url, cont("hold"))); close(holdDone) }() // the owner's one slot taken
	<-held
	// Registered after the gateway's: run before its server closes.
	t.Cleanup(func() { free(); <-holdDone })
	be := backendNamed(gw.Runtime().Pools["m1"].Backends, strings.TrimPrefix(owner.URL, "http://"))
	if be == nil {
		t.Fatal("the owner is not in the pool")
	}
	done := make(chan *http.Response, 1)
	go func() { done <- post(t, url, cont("later"), "X-Sluice-Max-Wait", "10s") }()
	waitFor(t, be.Awaited) // the continuation waits for the owner's slot
	return &waitingContinuation{owner: be, ownerSrv: owner, other: b, deps: deps, gw: gw, id: id, url: url, done: done}
}
