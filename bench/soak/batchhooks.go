package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// batchHookSink receives the gateway's OpenAI batch webhook events
// (queue.batch_webhooks) on two endpoints: /all (an entry written as its
// URL: every tenant's batches) and /scoped ({url, tenants: [the tenant of
// the driver's first mix address]}). The driver alternates its batches
// between two addresses, so half of them are another tenant's: /all must
// get every batch's end, /scoped only its tenant's. Lost: a batch ended
// and its event never reached an endpoint that receives it; duplicated:
// delivered there more than once (at least once allows it; counted, not
// judged); leaked: /scoped got another tenant's batch (fails the run).
type batchHookSink struct {
	srv *http.Server
	url string

	mu     sync.Mutex
	ended  map[string]string         // batch id -> its tenant, once terminal
	got    map[string]map[string]int // endpoint -> batch id -> deliveries
	scoped string                    // the tenant /scoped receives
}

func newBatchHookSink(scopedTenant string) (*batchHookSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &batchHookSink{url: "http://" + ln.Addr().String(), ended: map[string]string{},
		got: map[string]map[string]int{"/all": {}, "/scoped": {}}, scoped: scopedTenant}
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if json.Unmarshal(body, &ev) != nil || ev.Data.ID == "" {
			http.Error(w, "not an event", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		if m := h.got[r.URL.Path]; m != nil {
			m[ev.Data.ID]++
		}
		h.mu.Unlock()
	}), ReadHeaderTimeout: 10 * time.Second}
	go h.srv.Serve(ln)
	return h, nil
}

// yaml is the queue.batch_webhooks entries for the gateway's config.
func (h *batchHookSink) yaml() string {
	return fmt.Sprintf("  batch_webhooks:\n    - %s/all\n    - {url: %s/scoped, tenants: [%q]}\n", h.url, h.url, h.scoped)
}

// ended notes a batch the driver saw reach a terminal status.
func (h *batchHookSink) end(id, tenant string) {
	h.mu.Lock()
	h.ended[id] = tenant
	h.mu.Unlock()
}

type batchHookCounts struct{ expected, lost, dup int }

func (h *batchHookSink) counts() (all, scoped batchHookCounts, leaked int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	tally := func(c *batchHookCounts, n int) {
		c.expected++
		switch {
		case n == 0:
			c.lost++
		case n > 1:
			c.dup++
		}
	}
	for id, tenant := range h.ended {
		tally(&all, h.got["/all"][id])
		if tenant == h.scoped {
			tally(&scoped, h.got["/scoped"][id])
		} else if h.got["/scoped"][id] > 0 {
			leaked++
		}
	}
	return all, scoped, leaked
}

// settle waits (2 minutes at most) for every ended batch's events.
func (h *batchHookSink) settle(ctx context.Context) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if a, s, _ := h.counts(); a.lost+s.lost == 0 || !sleep(ctx, time.Second) {
			return
		}
	}
}

func (h *batchHookSink) report(w io.Writer) bool {
	a, s, leaked := h.counts()
	ok := a.lost == 0 && s.lost == 0 && leaked == 0
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "\nbatch events: /all %d ended, lost %d, duplicated %d; /scoped (%s) %d, lost %d, duplicated %d; other tenants' at /scoped %d  %s\n",
		a.expected, a.lost, a.dup, h.scoped, s.expected, s.lost, s.dup, leaked, verdict)
	return ok
}

func (h *batchHookSink) close() { h.srv.Close() }
