package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// jobTracker submits async jobs (Prefer: respond-async) next to the
// well-behaved client, receives their webhooks on the harness address, and
// afterwards checks every accepted job: lost = never reaches a terminal
// state (or is unknown to the gateway); duplicated = two terminal webhook
// deliveries, i.e. two visible results for one job (two executions are
// allowed: at-least-once).
type jobTracker struct {
	hookURL string
	srv     *http.Server
	client  *http.Client

	mu         sync.Mutex
	accepted   []string
	deliveries map[string]int
}

func startJobTracker() (*jobTracker, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	jt := &jobTracker{hookURL: "http://" + ln.Addr().String() + "/hook", deliveries: map[string]int{},
		client: httpClientFrom(wellBehavedIP, 20*time.Second)}
	jt.srv = &http.Server{Handler: http.HandlerFunc(jt.hook), ReadHeaderTimeout: 5 * time.Second}
	// No keep-alive: a socket the gateway still holds to the receiver after
	// an attack is then its own, not an idle pool entry.
	jt.srv.SetKeepAlivesEnabled(false)
	go jt.srv.Serve(ln)
	return jt, nil
}

func (jt *jobTracker) close() {
	jt.srv.Close()
	jt.client.CloseIdleConnections()
}

func (jt *jobTracker) hook(w http.ResponseWriter, r *http.Request) {
	var j struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&j); err == nil && terminal(j.Status) {
		jt.mu.Lock()
		jt.deliveries[j.ID]++
		jt.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}

func terminal(s string) bool { return s == "succeeded" || s == "failed" || s == "cancelled" }

// submit sends jobs at rate per second until ctx ends.
func (jt *jobTracker) submit(ctx context.Context, target string, rate float64, t *tally) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer jt.client.CloseIdleConnections()
	defer wg.Wait()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wg.Go(func() { t.add(jt.one(target, i)) })
	}
}

func (jt *jobTracker) one(target string, i int) (outcome, time.Duration, string) {
	body := chatBody(fmt.Sprintf("job-%d-%d", time.Now().UnixNano(), i), 16, 8, false)
	req, err := http.NewRequest(http.MethodPost, target+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return unannounced, 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "respond-async")
	req.Header.Set("X-Sluice-Webhook", jt.hookURL)
	req.Header.Set("Idempotency-Key", fmt.Sprintf("chaos-%d-%d", time.Now().UnixNano(), i))
	resp, err := jt.client.Do(req)
	if err != nil {
		return unannounced, 0, "job submit: " + transportReason(req.Context(), err)
	}
	defer resp.Body.Close()
	b, err := readAll(resp)
	if err != nil {
		return unannounced, 0, "job submit: " + transportReason(req.Context(), err)
	}
	if resp.StatusCode == http.StatusAccepted {
		var j struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(b, &j) != nil || j.ID == "" {
			return unannounced, 0, "202 without a job id"
		}
		jt.mu.Lock()
		jt.accepted = append(jt.accepted, j.ID)
		jt.mu.Unlock()
		return served, 0, ""
	}
	if ok, why := announcedError(resp.StatusCode, resp.Header, b); !ok {
		return unannounced, 0, "job submit: " + why
	}
	return refused, 0, ""
}

// settle polls every accepted job until it is terminal or wait passes,
// then waits a little for the last webhooks, and fills the row's job
// columns.
func (jt *jobTracker) settle(ctx context.Context, target string, wait time.Duration, row *Row) {
	jt.mu.Lock()
	ids := append([]string(nil), jt.accepted...)
	jt.mu.Unlock()
	row.JobsAccepted = len(ids)
	deadline := time.Now().Add(wait)
	pending := map[string]bool{}
	for _, id := range ids {
		pending[id] = true
	}
	for len(pending) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		for id := range pending {
			st, err := jt.status(target, id)
			if err == nil && terminal(st) {
				delete(pending, id)
			}
		}
		if len(pending) > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	row.Lost = len(pending)
	last := map[string]int{}
	for id := range pending {
		st, err := jt.status(target, id)
		if err != nil {
			st = err.Error()
		}
		last[st]++
	}
	// Webhooks of the last jobs may still be on their way.
	hookDeadline := time.Now().Add(min(wait, 5*time.Second))
	for time.Now().Before(hookDeadline) {
		jt.mu.Lock()
		got := len(jt.deliveries)
		jt.mu.Unlock()
		if got >= len(ids)-row.Lost {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	jt.client.CloseIdleConnections() // the harness' own keep-alive must not count as the gateway's
	jt.mu.Lock()
	defer jt.mu.Unlock()
	missing := 0
	for _, id := range ids {
		switch n := jt.deliveries[id]; {
		case n > 1:
			row.Duped++
		case n == 0 && !pending[id]:
			missing++
		}
	}
	if missing > 0 {
		row.note("%d finished jobs without a webhook delivery", missing)
	}
	if row.Lost > 0 {
		row.note("%d accepted jobs not finished %s after the attack (last seen: %v)", row.Lost, wait, last)
	}
}

func (jt *jobTracker) status(target, id string) (string, error) {
	resp, err := jt.client.Get(target + "/v1/jobs/" + id)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var j struct {
		Status string `json:"status"`
	}
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
		return "", err
	}
	return j.Status, nil
}
