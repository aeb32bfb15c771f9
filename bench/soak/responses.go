package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// respState is what the Responses traffic remembers: recent response ids
// for continuations, and an epoch of disturbances (a simulator killed or
// restarted, the extra simulator leaving the pool) that tells an honest
// 404/400/502 about an id whose backend went away from a wrong answer.
type respState struct {
	mu    sync.Mutex
	epoch int
	// pending, when not nil, is closed once a disturbance announced ahead
	// (disturbLater) has been counted.
	pending chan struct{}
	recent  []respID // a ring: continuations name one of the last len(recent) ids
	next    int
	fails   failLog
}

// respID is a stored response, the epoch it was made in and the client
// (source address) that made it: with auth on (--revoke lists keys) an
// anonymous caller's response is its address's, and a continuation from
// another address is an honest 400 previous_response_not_found (183 such
// failed soak10's verdict).
type respID struct {
	id     string
	epoch  int
	client *http.Client
}

// disturb records that a backend went away (or came back empty): answers
// about ids made before it may honestly be 404, 400 or 502.
func (s *respState) disturb() {
	s.mu.Lock()
	s.epoch++
	s.mu.Unlock()
}

// disturbLater counts a disturbance after delay (or never, if ctx ends
// first); a failure judged meanwhile waits for it (settled).
func (s *respState) disturbLater(ctx context.Context, delay time.Duration, bg *sync.WaitGroup) {
	done := make(chan struct{})
	s.mu.Lock()
	s.pending = done
	s.mu.Unlock()
	bg.Go(func() {
		if sleep(ctx, delay) {
			s.disturb()
		}
		s.mu.Lock()
		if s.pending == done {
			s.pending = nil
		}
		s.mu.Unlock()
		close(done)
	})
}

// settled waits until no disturbance announced ahead is still to be
// counted, then returns the epoch.
func (s *respState) settled() int {
	s.mu.Lock()
	p := s.pending
	s.mu.Unlock()
	if p != nil {
		<-p
	}
	return s.now()
}

func (s *respState) now() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

func (s *respState) add(r respID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recent) < 16 {
		s.recent = append(s.recent, r)
		return
	}
	s.recent[s.next] = r
	s.next = (s.next + 1) % len(s.recent)
}

func (s *respState) pick(intn func(int) int) (respID, bool) {
	s.mu.Lock()
	n := len(s.recent)
	s.mu.Unlock()
	if n == 0 {
		return respID{}, false
	}
	i := intn(n)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recent[i], true
}

// failLog counts one traffic's unexpected answers and keeps the first
// few for the verdict.
type failLog struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (f *failLog) add(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if len(f.first) < 10 {
		f.first = append(f.first, msg)
	}
}

// report prints the count, what counted as expected (expected) and the
// first few; true when there were none.
func (f *failLog) report(w io.Writer, traffic, expected string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	verdict := "PASS"
	if f.n > 0 {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s: %d unexpected answers (%s)  %s\n", traffic, f.n, expected, verdict)
	for _, m := range f.first {
		fmt.Fprintf(w, "  %s\n", m)
	}
	return f.n == 0
}

// respOutcome classifies one Responses answer (status 0: a transport or
// read error, or a stream without its final event). "ok" and "overload"
// (429/503 with Retry-After) are the gateway's normal answers; "kill" is
// an answer a request may honestly get when a backend went away since the
// id it names was made (disturbed): the backend's 404 (unknown id) or 400
// (previous_response_not_found) for a follow-up, a 502/503/504 or a cut
// for any. Everything else is a "failure".
func respOutcome(followUp bool, status int, retryAfter, disturbed bool) string {
	switch {
	case status >= 200 && status < 300:
		return "ok"
	case (status == 429 || status == 503) && retryAfter:
		return "overload"
	case !disturbed:
		return "failure"
	case status == 0 || status == 502 || status == 503 || status == 504:
		return "kill"
	case followUp && (status == 404 || status == 400):
		return "kill"
	}
	return "failure"
}

// responses sends one Responses API exchange: a POST, plain or streamed,
// a third of them continuing a recent response (previous_response_id);
// half are then read back (GET, input_items) and a third of those deleted.
func (d *driver) responses(ctx context.Context, c *http.Client) {
	stream := d.intn(2) == 0
	kind := "responses"
	if stream {
		kind += "-stream"
	}
	body := map[string]any{"model": "sim-model", "input": d.prompt(), "max_output_tokens": 16, "stream": stream}
	since := d.resp.now()
	followUp := false
	if d.intn(3) == 0 {
		if p, ok := d.resp.pick(d.intn); ok {
			body["previous_response_id"] = p.id
			kind, since, followUp = kind+"-cont", p.epoch, true
			if p.client != nil {
				c = p.client // from the address that made it
			}
		}
	}
	b, _ := json.Marshal(body)
	made := d.resp.now()
	id, ok := d.respCall(ctx, c, kind, http.MethodPost, "/v1/responses", b, stream, followUp, since)
	if !ok || id == "" {
		return
	}
	if d.intn(2) == 0 {
		for _, f := range []struct{ kind, method, path string }{
			{"responses-get", http.MethodGet, "/v1/responses/" + id},
			{"responses-items", http.MethodGet, "/v1/responses/" + id + "/input_items"},
		} {
			if _, ok := d.respCall(ctx, c, f.kind, f.method, f.path, nil, false, true, made); !ok {
				return
			}
		}
		if d.intn(3) == 0 {
			d.respCall(ctx, c, "responses-delete", http.MethodDelete, "/v1/responses/"+id, nil, false, true, made)
			return // a deleted id is never continued
		}
	}
	d.resp.add(respID{id: id, epoch: made, client: c})
}

// respCall sends one Responses request, counts its outcome and returns the
// response id it names (a POST's) and whether it was a 2xx.
func (d *driver) respCall(ctx context.Context, c *http.Client, kind, method, path string, body []byte, stream, followUp bool, since int) (string, bool) {
	status, retryAfter, id, detail := d.respDo(ctx, c, method, path, body, stream)
	if ctx.Err() != nil {
		d.count(kind, "abandoned")
		return "", false
	}
	outcome := respOutcome(followUp, status, retryAfter, d.resp.now() != since)
	if outcome == "failure" && followUp {
		// A response made on the leaving simulator between the driver's
		// counts and the gateway applying the pool change lost its backend
		// after them: its follow-up is judged once that is counted too
		// (a GET's 404 right after the POST was taken for a wrong answer).
		outcome = respOutcome(followUp, status, retryAfter, d.resp.settled() != since)
	}
	label := outcomeLabel(status, outcome)
	if outcome == "failure" {
		d.resp.fails.add(fmt.Sprintf("%s %s: %s %s", method, path, label, detail))
	}
	d.count(kind, label)
	return id, outcome == "ok"
}

// outcomeLabel is the count label of an answer with status (0: none came)
// judged outcome (respOutcome).
func outcomeLabel(status int, outcome string) string {
	label := fmt.Sprint(status)
	if status == 0 {
		label = "err"
	}
	switch outcome {
	case "kill":
		label += " (backend gone since)"
	case "failure":
		label += " FAILURE"
	}
	return label
}

// respDo is one exchange; a stream must end with its final event.
func (d *driver) respDo(ctx context.Context, c *http.Client, method, path string, body []byte, stream bool) (status int, retryAfter bool, id, detail string) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, rd)
	if err != nil {
		return 0, false, "", err.Error()
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, false, "", err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false, "", fmt.Sprintf("%d, then reading: %v", resp.StatusCode, err)
	}
	retryAfter = resp.Header.Get("Retry-After") != ""
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, retryAfter, "", string(bytes.TrimSpace(b[:min(len(b), 300)]))
	}
	if !stream {
		var v struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(b, &v) != nil {
			return 0, false, "", "a 2xx that is not JSON"
		}
		return resp.StatusCode, false, v.ID, ""
	}
	id, final := streamID(b)
	if !final {
		return 0, false, "", "a stream without its final event"
	}
	return resp.StatusCode, false, id, ""
}

// streamID reads a Responses stream: the response id its events carry and
// whether it ended with a final event (completed, incomplete or failed).
func streamID(b []byte) (id string, final bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev struct {
			Type     string `json:"type"`
			Response struct {
				ID string `json:"id"`
			} `json:"response"`
		}
		if json.Unmarshal([]byte(data), &ev) != nil {
			continue
		}
		if ev.Response.ID != "" {
			id = ev.Response.ID
		}
		switch ev.Type {
		case "response.completed", "response.incomplete", "response.failed":
			final = true
		}
	}
	return id, final
}

// respSummary is the verdict on the Responses answers: no failure.
func (d *driver) respSummary(w io.Writer) bool {
	return d.resp.fails.report(w, "responses", "not 2xx, not an overload's 429/503 with Retry-After, not about an id whose backend went away")
}
