package batchapi_test

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowLink is a TCP link to a NATS server whose answers (acknowledgements
// included) arrive latency late once set: a slow network, real bytes
// delayed, not a store made to fail.
type slowLink struct {
	latency atomic.Int64 // nanoseconds
	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

func newSlowLink(t *testing.T, natsURL string) *slowLink {
	t.Helper()
	target := strings.TrimPrefix(natsURL, "nats://")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &slowLink{ln: ln}
	l.wg.Add(1)
	go func() { // owned: ends when the listener closes (t.Cleanup)
		defer l.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			l.mu.Lock()
			l.conns = append(l.conns, c, s)
			l.mu.Unlock()
			l.wg.Add(2)
			go func() { defer l.wg.Done(); io.Copy(s, c); s.Close() }()
			go func() { defer l.wg.Done(); l.delayed(c, s); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		l.mu.Lock()
		for _, c := range l.conns {
			c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return l
}

// delayed copies from to dst, each read latency after it arrived.
func (l *slowLink) delayed(dst io.Writer, from io.Reader) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	chunks := make(chan chunk, 1024)
	go func() { // owned: ends with the connection
		defer close(chunks)
		for {
			b := make([]byte, 32<<10)
			n, err := from.Read(b)
			if n > 0 {
				chunks <- chunk{b[:n], time.Now()}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		time.Sleep(time.Until(c.at.Add(time.Duration(l.latency.Load())))) // the slowness itself
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

// A batch creation whose writes NATS leaves unacknowledged past nats.go's
// stall wait (the publish window full: here a window of 8 and answers
// 1 s late, far beyond the 200 ms stall wait) was a 500 internal_error:
// the gateway is busy, not broken. It is 503 queue_busy with Retry-After,
// the creation undone (no failed batch left behind), and the same
// creation succeeds once the link is fast again.
func TestBatchCreateOnAStalledPublishWindowIsBusy(t *testing.T) {
	var link *slowLink
	e := newEnv(t, envOptions{publishWindow: 8, link: func(t *testing.T, natsURL string) string {
		link = newSlowLink(t, natsURL)
		return "nats://" + link.ln.Addr().String()
	}})
	var sb strings.Builder
	for i := range 20 { // 40 writes in one chunk: past the window of 8
		sb.WriteString(chatLine("req-"+strconv.Itoa(i), "m1") + "\n")
	}
	f := e.uploadOK([]byte(sb.String()))
	create := func() response {
		return e.postJSON("/v1/batches", map[string]any{"input_file_id": f.ID, "endpoint": "/v1/chat/completions",
			"completion_window": "24h"})
	}
	link.latency.Store(int64(time.Second))
	r := create()
	link.latency.Store(0)
	ae := r.wantError(t, http.StatusServiceUnavailable)
	if ae.Error.Code == nil || *ae.Error.Code != "queue_busy" || ae.Error.Type != "server_error" {
		t.Fatalf("stalled creation: %s; want 503 queue_busy", r.body)
	}
	if ra := r.header.Get("Retry-After"); ra == "" {
		t.Errorf("no Retry-After on %s", r.body)
	}
	list := e.do(e.tenant, http.MethodGet, "/v1/batches", "", nil)
	if list.status != http.StatusOK || strings.Contains(string(list.body), `"id":"batch_`) {
		t.Fatalf("after the refused creation the list is %d %s; want no batch", list.status, list.body)
	}
	if r := create(); r.status != http.StatusOK {
		t.Fatalf("creation on a fast link: %d %s", r.status, r.body)
	}
}
