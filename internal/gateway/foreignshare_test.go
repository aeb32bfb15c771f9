package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestWrappedBackendErrorIsNeverCached: a backend's HTML 404 (a proxy in
// front of it that lacks the path) is an answer the cache would keep for
// negative_ttl; wrapped into an OpenAI error object naming the request
// id, it is not stored: the next identical request asks the backend and
// gets an object naming its own id (before: a HIT naming the first
// request's id, under which nothing of the second is logged).
func TestWrappedBackendErrorIsNeverCached(t *testing.T) {
	var calls atomic.Int32
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		calls.Add(1)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "<html><h1>404 Not Found</h1><hr>nginx</html>")
	}))
	defer be.Close()
	url, _ := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	for i := range 2 {
		resp := post(t, url, fmt.Sprintf(detBody, ""))
		got := readAll(t, resp)
		id := resp.Header.Get("X-Request-Id")
		_, code, msg := apiErr(t, got)
		if resp.StatusCode != http.StatusNotFound || code != "upstream_error" || id == "" || !strings.Contains(msg, id) {
			t.Fatalf("request %d: %d X-Cache %q id %q: %s", i, resp.StatusCode, resp.Header.Get("X-Cache"), id, got)
		}
		if resp.Header.Get("X-Cache") == "HIT" {
			t.Fatalf("request %d: the wrapped error was cached: %s", i, got)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("backend asked %d times, want 2", n)
	}
}

// TestCoalescedFollowerOfAWrappedErrorGetsItsOwnID: a follower that
// shares its leader's answer, a backend's HTML 502 wrapped into an OpenAI
// error object, gets the object naming its own request id (its
// X-Request-Id), with a log line under that id holding the page's start
// (before: the leader's id, which the follower has never seen).
func TestCoalescedFollowerOfAWrappedErrorGetsItsOwnID(t *testing.T) {
	// 502: relayed by relay; 503 with Retry-After: every backend pushed
	// back, relayed by relayBusy.
	for _, status := range []int{http.StatusBadGateway, http.StatusServiceUnavailable} {
		release := make(chan struct{})
		var calls atomic.Int32
		be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			calls.Add(1)
			<-release
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Retry-After", "3") // kept through the wrap
			w.WriteHeader(status)
			io.WriteString(w, "<html><h1>"+http.StatusText(status)+"</h1><hr>nginx upstream 10.0.0.7</html>")
		}))
		defer be.Close()
		cfg := testConfig(be.URL)
		cfg.Retry.Attempts = 1 // a 502 with attempts left is tried again
		url, gw := startCachingGatewayCfg(t, cfg, nil, time.Now)
		logs := &lockedBuffer{}
		gw.log = slog.New(slog.NewJSONHandler(logs, nil)) // before any request
		type answer struct {
			status   int
			id, body string
			xcache   string
			retry    string
		}
		out := make(chan answer, 2)
		send := func() {
			resp := post(t, url, fmt.Sprintf(detBody, ""))
			body := readAll(t, resp)
			out <- answer{resp.StatusCode, resp.Header.Get("X-Request-Id"), body, resp.Header.Get("X-Cache"), resp.Header.Get("Retry-After")}
		}
		go send()
		waitFlight(t, gw, 1)
		go send()
		waitFlight(t, gw, 2)
		close(release)
		coalesced := false
		for range 2 {
			a := <-out
			_, code, msg := apiErr(t, a.body)
			if a.status != status || code != "upstream_error" || a.id == "" || !strings.Contains(msg, a.id) {
				t.Errorf("%s: %d id %q: %s", a.xcache, a.status, a.id, a.body)
			}
			if a.retry == "" { // the backend's word on when to come back is every sharer's
				t.Errorf("%s %d: no Retry-After", a.xcache, a.status)
			}
			if strings.Contains(a.body, "nginx") {
				t.Errorf("the page reached a client: %s", a.body)
			}
			if !strings.Contains(logs.String(), `"request_id":"`+a.id+`"`) || !strings.Contains(logs.String(), http.StatusText(status)) {
				t.Errorf("%s: no log line under %q:\n%s", a.xcache, a.id, logs.String())
			}
			coalesced = coalesced || a.xcache == "COALESCED"
		}
		if !coalesced || calls.Load() != 1 {
			t.Fatalf("coalesced %v, backend calls %d: the test shares no answer", coalesced, calls.Load())
		}
	}
}
