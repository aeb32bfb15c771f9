package app

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// closingOnSecond is a raw backend whose first chat connection answers
// one request keep-alive and then closes on reading the next, before a
// byte of answer (a backend being stopped as the request went out on its
// pooled connection); it says so on answered and closed. Other requests
// (probes, scrapes) get a 404 and a close.
func closingOnSecond(t *testing.T, answered, closed chan<- struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var chatConns atomic.Int32
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				br := bufio.NewReader(nc)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				if req.URL.Path != "/v1/chat/completions" || chatConns.Add(1) > 1 {
					io.WriteString(nc, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
					return
				}
				io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 22\r\n\r\n"+`{"served_by":"closes"}`)
				answered <- struct{}{}
				if req, err = http.ReadRequest(br); err == nil {
					io.Copy(io.Discard, req.Body)
				}
				closed <- struct{}{}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// A request sent on a pooled keep-alive connection that its backend closes
// before answering is retried on the other backend, and, that one being
// at its limit, waits for its slot as a retry after a refused connection
// does: the backend being stopped is still counted by admission. Before,
// it was answered 502 upstream_error at once (not retried at all).
func TestRetryAfterStaleConnectionWaitsForASlot(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	var hold atomic.Bool
	alive := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path != "/v1/chat/completions" {
			http.NotFound(w, r)
			return
		}
		if hold.CompareAndSwap(true, false) {
			started <- struct{}{}
			<-release // this request holds the only slot
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"served_by":"alive"}`)
	}))
	t.Cleanup(alive.Close)
	var freed sync.Once
	free := func() { freed.Do(func() { close(release) }) }
	answered, closed := make(chan struct{}, 1), make(chan struct{}, 1)
	closes := closingOnSecond(t, answered, closed)

	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := "listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n" +
		"admission: {enabled: false, max_wait: 10m}\nhealth: {max_fails: 0, active: {interval: 0s}}\n" +
		"models:\n  - name: m1\n    policy: round_robin\n    backends:\n" +
		"      - {url: " + alive.URL + ", max_concurrency: 1}\n      - {url: " + closes + ", max_concurrency: 1}\n"
	writeFile(t, path, src)
	a := newApp(t, path)
	url := "http://" + serveLoopback(t, a)
	t.Cleanup(free) // first: the app's drain waits for the held request

	// Until the closing backend has answered one (its connection now
	// idle in the pool); round robin then picks alive next.
	for i := 0; ; i++ {
		if i == 4 {
			t.Fatal("the closing backend was never picked")
		}
		code, body := chat(url, "m1")
		if code != 200 {
			t.Fatalf("warm-up: %d %s", code, body)
		}
		if strings.Contains(body, `"closes"`) {
			<-answered
			break
		}
	}
	var aliveBackend *endpoint.Backend
	for _, be := range a.gw.Runtime().Pools["m1"].Backends {
		if be.Spec().URL == alive.URL {
			aliveBackend = be
		}
	}
	first, second := make(chan chatAnswer, 1), make(chan chatAnswer, 1)
	hold.Store(true)
	go func() { c, b := chat(url, "m1"); first <- chatAnswer{c, b} }()
	<-started // alive's one slot is taken
	go func() { c, b := chat(url, "m1"); second <- chatAnswer{c, b} }()
	<-closed // the second request went out on the pooled connection, which closed
	retryServedAfterItsSlotWait(t, "the request whose pooled connection closed", aliveBackend, first, second, free)
}
