package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRespOutcome(t *testing.T) {
	for _, c := range []struct {
		followUp, retryAfter, disturbed bool
		status                          int
		want                            string
	}{
		{false, false, false, 200, "ok"},
		{true, false, true, 200, "ok"},
		{false, true, false, 429, "overload"},
		{false, true, false, 503, "overload"},
		{false, false, false, 503, "failure"}, // no Retry-After, no kill
		{true, false, false, 404, "failure"},  // the id was lost with its backend up: misrouted or forgotten
		{true, false, false, 400, "failure"},
		{true, false, true, 404, "kill"},
		{true, false, true, 400, "kill"},
		{true, false, true, 502, "kill"},
		{false, false, true, 0, "kill"},
		{false, false, false, 0, "failure"},
		{false, false, true, 404, "failure"}, // a fresh POST names no id
		{true, false, true, 500, "failure"},
	} {
		if got := respOutcome(c.followUp, c.status, c.retryAfter, c.disturbed); got != c.want {
			t.Errorf("respOutcome(followUp %v, %d, retryAfter %v, disturbed %v) = %s, want %s",
				c.followUp, c.status, c.retryAfter, c.disturbed, got, c.want)
		}
	}
}

func TestStreamIDNeedsTheFinalEvent(t *testing.T) {
	full := "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\"}}\n\n" +
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"a \"}\n\n" +
		"event: response.incomplete\ndata: {\"type\":\"response.incomplete\",\"response\":{\"id\":\"resp_1\"}}\n\n"
	if id, final := streamID([]byte(full)); id != "resp_1" || !final {
		t.Fatalf("streamID = %q, %v", id, final)
	}
	cut := full[:len(full)-80]
	if _, final := streamID([]byte(cut)); final {
		t.Fatalf("a cut stream had its final event")
	}
}

func TestRespStateRingKeepsTheLast16(t *testing.T) {
	var s respState
	for i := range 40 {
		s.add(respID{id: string(rune('a' + i))})
	}
	if len(s.recent) != 16 {
		t.Fatalf("ring holds %d", len(s.recent))
	}
	seen := map[string]bool{}
	for _, r := range s.recent {
		seen[r.id] = true
	}
	if seen["a"] || !seen[string(rune('a'+39))] {
		t.Fatalf("ring %v", s.recent)
	}
}

// TestSettledWaitsForAnnouncedDisturbance: a failure judged while a
// disturbance is announced ahead (a pool change the gateway applies after
// its debounce) is judged against the epoch after it; with none pending,
// settled is now.
func TestSettledWaitsForAnnouncedDisturbance(t *testing.T) {
	var s respState
	if s.settled() != 0 {
		t.Fatal("nothing pending: settled is the current epoch")
	}
	var bg sync.WaitGroup
	s.disturbLater(context.Background(), time.Millisecond, &bg)
	if got := s.settled(); got != 1 {
		t.Fatalf("settled = %d, want 1 (after the announced disturbance)", got)
	}
	bg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.disturbLater(ctx, time.Hour, &bg)
	if got := s.settled(); got != 1 {
		t.Fatalf("a run that ended first: settled = %d, want 1 (no disturbance counted)", got)
	}
	bg.Wait()
}

// With auth on, a response belongs to the address that made it: the
// driver continues it from that address. The server here owns each id by
// the client that made it (a header its transport adds) and answers a
// continuation from another 400, as the gateway does.
func TestContinuationsComeFromTheMakersAddress(t *testing.T) {
	var (
		mu    sync.Mutex
		owner = map[string]string{}
		n     int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Prev   string `json:"previous_response_id"`
			Stream bool   `json:"stream"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		from := r.Header.Get("X-From")
		mu.Lock()
		defer mu.Unlock()
		if body.Prev != "" && owner[body.Prev] != from {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":{"code":"previous_response_not_found"}}`)
			return
		}
		n++
		id := fmt.Sprintf("resp_%d", n)
		owner[id] = from
		if body.Stream {
			fmt.Fprintf(w, "data: {\"type\":\"response.completed\",\"response\":{\"id\":%q}}\n\n", id)
			return
		}
		fmt.Fprintf(w, `{"id":%q}`, id)
	}))
	defer srv.Close()
	d := newDriver(srv.URL, 7, 4)
	clients := []*http.Client{}
	for _, name := range []string{"a", "b", "c"} {
		clients = append(clients, &http.Client{Transport: fromHeader{name}})
	}
	for i := 0; i < 300; i++ {
		d.responses(context.Background(), clients[i%len(clients)])
	}
	var b strings.Builder
	if !d.respSummary(&b) {
		t.Fatalf("continuations refused as another address's:\n%s", b.String())
	}
	if !strings.Contains(d.summary(), "-cont 200") {
		t.Fatalf("no continuation was sent:\n%s", d.summary())
	}
}

// fromHeader marks a client's requests, standing for its source address.
type fromHeader struct{ name string }

func (f fromHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-From", f.name)
	return http.DefaultTransport.RoundTrip(r)
}
