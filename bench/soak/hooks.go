package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"sync"
	"time"
)

// hookSink is the webhooks' receiver: a loopback server in the driver
// counting the deliveries of each job (the webhook-id header is the job
// id, the same on every attempt), against the jobs submitted with a
// webhook. Lost: accepted and never delivered; duplicated: delivered
// more than once (at-least-once delivery allows it; counted, not judged).
type hookSink struct {
	srv *http.Server
	url string

	mu        sync.Mutex
	accepted  map[string]bool
	delivered map[string]int
}

func newHookSink() (*hookSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &hookSink{url: "http://" + ln.Addr().String() + "/hook", accepted: map[string]bool{}, delivered: map[string]int{}}
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h.mu.Lock()
		h.delivered[r.Header.Get("webhook-id")]++
		h.mu.Unlock()
	}), ReadHeaderTimeout: 10 * time.Second}
	go h.srv.Serve(ln)
	return h, nil
}

// accept notes a job submitted with a webhook, from its Location.
func (h *hookSink) accept(location string) {
	h.mu.Lock()
	h.accepted[path.Base(location)] = true
	h.mu.Unlock()
}

// counts are the jobs accepted with a webhook, those never delivered,
// and those delivered more than once.
func (h *hookSink) counts() (accepted, lost, dup int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id := range h.accepted {
		switch n := h.delivered[id]; {
		case n == 0:
			lost++
		case n > 1:
			dup++
		}
	}
	return len(h.accepted), lost, dup
}

// settle waits (2 minutes at most) for every accepted job's webhook.
func (h *hookSink) settle(ctx context.Context) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if _, lost, _ := h.counts(); lost == 0 || !sleep(ctx, time.Second) {
			return
		}
	}
}

func (h *hookSink) report(w io.Writer) bool {
	a, lost, dup := h.counts()
	verdict := "PASS"
	if lost > 0 {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "\nwebhooks: jobs accepted with one %d, lost %d, duplicated %d  %s\n", a, lost, dup, verdict)
	return lost == 0
}

func (h *hookSink) close() { h.srv.Close() }

// batchLoop runs a batch of lines requests every period until ctx ends
// (one at a time: a batch still running delays the next): the Batch API
// and Files traffic of a mix heavy on them.
func (d *driver) batchLoop(ctx context.Context, period time.Duration, lines int, event func(string, ...any)) {
	for sleep(ctx, period) {
		if err := d.batch(ctx, lines); err != nil && ctx.Err() == nil {
			event("batch: %v", err)
			d.count("batch", "error")
		}
	}
}
