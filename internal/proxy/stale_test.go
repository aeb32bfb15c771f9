package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/h1client"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// closingBackend is a raw TCP backend that takes one connection, answers
// its first request keep-alive and then, as a backend being replaced
// does, closes the connection on the next request without a byte of
// answer: after reading the whole request (taken: it may have acted on
// it), or after its head only, resetting the connection (cut: the body
// had not all arrived). The step it is at is its own; no timing.
func closingBackend(t *testing.T, cut bool) *endpoint.Backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		ln.Close() // one connection only: a dial to it again is refused
		if err != nil {
			return
		}
		defer nc.Close()
		br := bufio.NewReader(nc)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		const answer = `{"served_by":"closing"}`
		io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 23\r\n\r\n"+answer)
		req, err = http.ReadRequest(br)
		if err != nil {
			return
		}
		if cut {
			nc.(*net.TCPConn).SetLinger(0) // closed with its body unread: a reset
			return
		}
		io.Copy(io.Discard, req.Body)
	}()
	b, err := endpoint.New(endpoint.Spec{URL: "http://" + ln.Addr().String()}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// neverTimer is a timer that never fires: what a test that must not
// depend on the machine's speed gives a pool's reaper or a watchdog.
type neverTimer struct{}

func (neverTimer) Stop() bool               { return true }
func (neverTimer) Reset(time.Duration) bool { return true }

// firstUntried picks the backends in order, skipping those tried.
type firstUntried []*endpoint.Backend

func (s firstUntried) Select(tried []*endpoint.Backend) (*endpoint.Backend, error) {
	for _, b := range s {
		if !containsBackend(tried, b) {
			return b, nil
		}
	}
	return nil, proxy.ErrNoBackend
}

func containsBackend(list []*endpoint.Backend, b *endpoint.Backend) bool {
	for _, x := range list {
		if x == b {
			return true
		}
	}
	return false
}

// A request sent on a pooled keep-alive connection that the backend
// closes before one byte of answer (the stale keep-alive race of a
// backend being replaced) goes to another backend when the request is
// pure, as a 502 would, or when it did not leave whole; a stored request
// the backend read whole is answered 502, as before (it may hold it).
// Before, every one was answered 502 upstream_error: the 5 left in
// poolswitch's rollout run.
func TestStaleKeepAliveConnectionRetried(t *testing.T) {
	for _, tc := range []struct {
		name        string
		stored, cut bool
		size        int // the second request's body
		retried     bool
	}{
		{name: "pure request taken", size: 100, retried: true},
		{name: "stored request taken", stored: true, size: 100, retried: false},
		// Larger than any socket buffers: the write fails on the reset.
		{name: "stored request cut", stored: true, cut: true, size: 32 << 20, retried: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stayed atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				stayed.Add(1)
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"served_by":"stays"}`)
			}))
			t.Cleanup(srv.Close)
			stays, err := endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{})
			if err != nil {
				t.Fatal(err)
			}
			closing := closingBackend(t, tc.cut)
			// The pool's and the forwarder's clocks stand still and their
			// timers never fire: the second request must find the first's
			// connection however long the machine takes between the two
			// (building the 32 MiB body takes ~4 s under -race, ~90 s once
			// at load 28, which passed the pool's 90 s IdleTimeout on the
			// wall clock: the connection expired, reuses 0).
			clock := func() time.Time { return time.Unix(1_800_000_000, 0) }
			lean := h1client.New(h1client.Options{Now: clock,
				AfterFunc: func(time.Duration, func()) h1client.Timer { return neverTimer{} }})
			t.Cleanup(lean.CloseIdleConnections)
			f := proxy.NewForwarder(proxy.Options{Transport: lean, Attempts: 2, Now: clock,
				AfterFunc: func(time.Duration, func()) proxy.Timer { return neverTimer{} },
				Timeouts:  proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Minute}})
			forward := func(size int) (*httptest.ResponseRecorder, proxy.Result) {
				raw := `{"model":"m","messages":[],"pad":"` + strings.Repeat("x", size) + `"}`
				body, err := proxy.NewBodyPool(nil).ReadBody(strings.NewReader(raw), int64(len(raw)), 64<<20)
				if err != nil {
					t.Fatal(err)
				}
				defer body.Release()
				w := httptest.NewRecorder()
				res := f.Forward(context.Background(), w, &proxy.Request{Path: "/v1/chat/completions", Header: http.Header{},
					Body: body, Peek: openai.Peek{Model: "m"}, ServeModel: "m", SideEffects: tc.stored}, firstUntried{closing, stays})
				return w, res
			}
			if w, res := forward(10); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"closing"`) {
				t.Fatalf("first request: status %d, err %v, body %q; want 200 from the closing backend", w.Code, res.Err, w.Body.String())
			}
			w, res := forward(tc.size)
			if st := lean.Stats(); st.Reuses != 1 {
				t.Fatalf("pooled connection reuses %d; want 1 (the second request on the first's connection)", st.Reuses)
			}
			// Closing a keep-alive connection is no failure of the
			// backend's: its passive health (max_fails) is not charged.
			if n := closing.Failures(); n != 0 {
				t.Fatalf("closing backend charged %d failures; want 0 (it closed a keep-alive connection)", n)
			}
			if tc.retried {
				if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"stays"`) || res.Attempts != 2 {
					t.Fatalf("status %d, attempts %d, err %v, body %q; want 200 from the other backend on the second attempt",
						w.Code, res.Attempts, res.Err, w.Body.String())
				}
				return
			}
			// The gateway answers res.Err (502 upstream_error); nothing was relayed.
			if !errors.Is(res.Err, proxy.ErrUpstream) || w.Body.Len() != 0 || res.Attempts != 1 || stayed.Load() != 0 {
				t.Fatalf("err %v, attempts %d, body %q, other backend asked %d times; want the upstream error, 1 attempt, the other never asked",
					res.Err, res.Attempts, w.Body.String(), stayed.Load())
			}
		})
	}
}
