package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// jobTracker submits async jobs (Prefer: respond-async) next to the
// well-behaved client, receives their webhooks on the harness address, and
// afterwards checks every accepted job: lost = never reaches a terminal
// state (or is unknown to the gateway); duplicated = two visible results
// for one job: terminal webhooks of one job carrying different results,
// one whose result is not the one GET /v1/jobs/{id} shows, or one whose
// webhook-id is not the job's id (the id receivers deduplicate on).
//
// A second delivery of the same result under the same webhook-id is not a
// duplicate: the product's webhooks are at least once (Standard Webhooks,
// docs/RELIABILITY.md), and a gateway killed after the receiver answered
// but before it recorded the delivery must send it again: it cannot know
// the receiver had it. Those are counted apart (redelivered, in a note).
// Before (until 2026-12-07) every second delivery counted as duplicated,
// and gateway-sigkill failed whenever its SIGKILL landed in that window.
// Two executions are allowed too (at-least-once); two results are not.
//
// Webhooks of jobs the client never saw accepted (a gateway killed after
// it stored a job but before its 202 reached the client) are checked too
// (unseen): such a webhook is not an error by itself, but its job must be
// one the store holds (GET /v1/jobs/{id}), terminal, with the result the
// webhook carried, and its body a valid result. Webhooks the store cannot
// account for (an id it does not hold, a body that is not a job's result)
// are stray. Before (until 2026-12-07) the receiver ignored both.
type jobTracker struct {
	hookURL string
	srv     *http.Server
	client  *http.Client

	mu         sync.Mutex
	accepted   []string
	deliveries map[string]*hookSeen
	// invalid are the receiver's reasons for webhook bodies that are not a
	// finished job's result, whatever their id.
	invalid []string
	// answered, when set, is closed by the hook once it has answered the
	// next terminal webhook (armAnswered): gateway-sigkill kills then, in
	// the window between the receiver's 2xx and the gateway's record of
	// it.
	answered chan struct{}
}

// hookSeen is what the receiver saw of one job's terminal webhooks.
type hookSeen struct {
	n       int
	results map[string]bool // visibleResult fingerprints
	wrongID bool            // a webhook-id header other than the job's id
}

// visibleResult is what a client takes for a finished job's result: two
// different ones for one job are two results.
type visibleResult struct {
	Status     string          `json:"status"`
	FinishedAt int64           `json:"finished_at"`
	Result     json.RawMessage `json:"result"`
	Error      json.RawMessage `json:"error"`
}

// fingerprint is v in one canonical form (Marshal compacts the raw parts).
func (v visibleResult) fingerprint() string {
	b, _ := json.Marshal(v)
	return string(b)
}

func startJobTracker() (*jobTracker, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	jt := &jobTracker{hookURL: "http://" + ln.Addr().String() + "/hook", deliveries: map[string]*hookSeen{},
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
		Object string `json:"object"`
		visibleResult
	}
	err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&j)
	if why := invalidResult(j.ID, j.Object, j.visibleResult, err); why != "" {
		jt.mu.Lock()
		jt.invalid = append(jt.invalid, why)
		jt.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	jt.mu.Lock()
	seen := jt.deliveries[j.ID]
	if seen == nil {
		seen = &hookSeen{results: map[string]bool{}}
		jt.deliveries[j.ID] = seen
	}
	seen.n++
	seen.results[j.visibleResult.fingerprint()] = true
	if r.Header.Get("webhook-id") != j.ID {
		seen.wrongID = true
	}
	answered := jt.answered
	jt.answered = nil
	jt.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
	if answered != nil {
		// The answer on the wire first: the kill is meant to land after
		// the gateway can read it.
		_ = http.NewResponseController(w).Flush()
		close(answered)
	}
}

// armAnswered returns a channel closed once the hook has answered the next
// terminal webhook.
func (jt *jobTracker) armAnswered() <-chan struct{} {
	ch := make(chan struct{})
	jt.mu.Lock()
	jt.answered = ch
	jt.mu.Unlock()
	return ch
}

func terminal(s string) bool { return s == "succeeded" || s == "failed" || s == "cancelled" }

// invalidResult says why a webhook body (decoded with err) is not a
// finished job's result, "" when it is: the harness submits jobs only, so
// every webhook is a job's terminal notification (jobs.Job: object "job",
// a terminal status, finished_at; a result when succeeded; when failed an
// error, or the final answer as its result: a backend's 4xx or 5xx, the
// last attempt's 502, records no error).
func invalidResult(id, object string, v visibleResult, err error) string {
	switch {
	case err != nil:
		return "body not JSON: " + err.Error()
	case id == "" || object != "job":
		return fmt.Sprintf("not a job object (id %q, object %q)", id, object)
	case !terminal(v.Status):
		return fmt.Sprintf("job %s: status %q is not terminal", id, v.Status)
	case v.FinishedAt <= 0:
		return fmt.Sprintf("job %s: %s without finished_at", id, v.Status)
	case v.Status == "succeeded" && isNull(v.Result):
		return fmt.Sprintf("job %s: succeeded without a result", id)
	case v.Status == "failed" && isNull(v.Error) && isNull(v.Result):
		return fmt.Sprintf("job %s: failed without an error or a result", id)
	}
	return ""
}

func isNull(raw json.RawMessage) bool {
	return len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

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
	final := map[string]string{} // the terminal record's visible result, by job
	for len(pending) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		for id := range pending {
			v, err := jt.status(target, id)
			if err == nil && terminal(v.Status) {
				delete(pending, id)
				final[id] = v.fingerprint()
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
		v, err := jt.status(target, id)
		st := v.Status
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
	jt.checkUnseen(target, ids, row)
	jt.client.CloseIdleConnections() // the harness' own keep-alive must not count as the gateway's
	jt.mu.Lock()
	defer jt.mu.Unlock()
	missing, again := 0, 0
	for _, id := range ids {
		switch seen := jt.deliveries[id]; {
		case seen == nil:
			if !pending[id] {
				missing++
			}
		case twoResults(seen, final[id]):
			row.Duped++
		case seen.n > 1:
			again++
		}
	}
	if missing > 0 {
		row.note("%d finished jobs without a webhook delivery", missing)
	}
	if again > 0 {
		row.note("%d jobs' webhooks delivered again, same webhook-id and result (at least once; one result each)", again)
	}
	if row.Lost > 0 {
		row.note("%d accepted jobs not finished %s after the attack (last seen: %v)", row.Lost, wait, last)
	}
}

// checkUnseen checks the webhooks of jobs the client was never told of
// (their 202 lost: the gateway killed after it stored the job) against the
// store, and the bodies the receiver could not take for a result: a
// webhook of a job the store holds, terminal, with the result its
// webhooks carried, is at least once (counted, noted); one of a job the
// store does not hold, or a body that is no result, is stray; a job the
// store holds that is not terminal is lost, one whose webhooks show
// another result than its record is duplicated.
func (jt *jobTracker) checkUnseen(target string, accepted []string, row *Row) {
	known := make(map[string]bool, len(accepted))
	for _, id := range accepted {
		known[id] = true
	}
	jt.mu.Lock()
	unseen := map[string]*hookSeen{}
	for id, seen := range jt.deliveries {
		if !known[id] {
			unseen[id] = &hookSeen{n: seen.n, results: maps.Clone(seen.results), wrongID: seen.wrongID}
		}
	}
	invalid := append([]string(nil), jt.invalid...)
	jt.mu.Unlock()
	var stray []string
	for id, seen := range unseen {
		v, err := jt.status(target, id)
		switch {
		case err != nil:
			stray = append(stray, fmt.Sprintf("job %s: GET /v1/jobs: %v", id, err))
		case !terminal(v.Status):
			row.Lost++
			row.note("job %s (its 202 never read) sent a webhook but its record is %q", id, v.Status)
		case twoResults(seen, v.fingerprint()):
			row.Duped++
		default:
			row.Unseen++
		}
	}
	stray = append(stray, invalid...)
	row.Stray += len(stray)
	if row.Unseen > 0 {
		row.note("%d jobs whose 202 the client never read sent their webhook (at least once; the store holds each, terminal, same result)", row.Unseen)
	}
	if len(stray) > 0 {
		slices.Sort(stray)
		row.note("%d webhooks the store cannot account for: %s", len(stray), strings.Join(stray[:min(len(stray), 5)], "; "))
	}
}

// twoResults reports whether a job's webhooks showed a client two
// results: different ones, one other than its record's (final, "" when
// the job did not finish), or under a webhook-id a receiver would not
// deduplicate on.
func twoResults(seen *hookSeen, final string) bool {
	if seen.wrongID || len(seen.results) > 1 {
		return true
	}
	return final != "" && !seen.results[final]
}

// status is the job as GET /v1/jobs/{id} shows it.
func (jt *jobTracker) status(target, id string) (visibleResult, error) {
	resp, err := jt.client.Get(target + "/v1/jobs/" + id)
	if err != nil {
		return visibleResult{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return visibleResult{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	var v visibleResult
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return visibleResult{}, err
	}
	return v, nil
}
