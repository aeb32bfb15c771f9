package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/outcome"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// A non-streamed request's prompt counts in its backend's queued prefill
// (endpoint.Backend.StartPrefillOf) and is taken out however the call
// ends: its answer, an error, a 503 retried on another backend, no answer
// at all, an event stream in its place, the client leaving. One left
// behind would hold every later long prompt until its estimated prefill
// end (review32 of branch prefill2). The clock is frozen, so nothing
// leaves the sum by time: only the call's end takes it out.
func TestNonStreamedPromptLeavesTheQueuedPrefillOnEveryEnd(t *testing.T) {
	const within = 500 * time.Millisecond
	clock := time.Unix(1000, 0)
	modes := make(chan string, 8)
	var backends [2]*endpoint.Backend
	seen := make(chan int, 8) // the first backend's room as each answer begins
	cancels := make(chan context.CancelFunc, 1)
	handler := func(w http.ResponseWriter, r *http.Request) {
		room, _ := backends[0].PrefillRoom(clock, 10, within)
		seen <- room
		switch <-modes {
		case "json":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"choices":[]}`))
		case "error":
			http.Error(w, `{"error":{"message":"boom"}}`, http.StatusBadRequest)
		case "busy":
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":{"message":"busy"}}`, http.StatusServiceUnavailable)
		case "sse":
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n"))
		case "hangup":
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
		case "cancel": // the client leaves before any answer
			io.Copy(io.Discard, r.Body) // so that the server sees the client go
			(<-cancels)()
			<-r.Context().Done()
		}
	}
	for i := range backends {
		srv := httptest.NewServer(http.HandlerFunc(handler))
		t.Cleanup(srv.Close)
		b, err := endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		teach := clock.Add(-10 * time.Second)
		for range 2 { // two lone 4,000-token starts in 1.6 s: 2,500 tokens/s
			b.Acquire()
			b.StartWaitingOf(teach, endpoint.Wait{Prompt: 4000})
			teach = teach.Add(1600 * time.Millisecond)
			b.FirstTokenOf(teach, 1600*time.Millisecond, endpoint.Wait{Prompt: 4000})
			b.ReleaseFed(teach, outcome.Success, 1600*time.Millisecond, 0)
		}
		backends[i] = b
	}
	idle, priced := backends[0].PrefillRoom(clock, 10, within)
	if !priced {
		t.Fatal("rate not learned")
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	forwarder := func(attempts int) *proxy.Forwarder {
		return proxy.NewForwarder(proxy.Options{Transport: transport, Attempts: attempts, Now: func() time.Time { return clock },
			Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Minute}})
	}
	raw := `{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":4}`
	for _, path := range [][]string{{"json"}, {"error"}, {"busy", "json"}, {"sse"}, {"hangup"}, {"cancel"}} {
		for _, m := range path {
			modes <- m
		}
		ctx, cancel := context.WithCancel(context.Background())
		if path[0] == "cancel" {
			cancels <- cancel
		}
		body, err := proxy.NewBodyPool(nil).ReadBody(strings.NewReader(raw), int64(len(raw)), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		forwarder(len(path)).Forward(ctx, w, &proxy.Request{Path: "/v1/chat/completions", Header: http.Header{},
			Body: body, Peek: openai.Peek{Model: "m"}, ServeModel: "m", PromptTokens: 4000},
			firstThenOthers{first: backends[0], others: backends[1:]})
		body.Release()
		cancel()
		if got := <-seen; got != 1 {
			t.Errorf("%v: room while its 4,000-token prompt is sent: %d; want 1 (its own slot: 1.6 s of prefill queued)", path, got)
		}
		for range path[1:] {
			<-seen
		}
		for i, b := range backends {
			if got, _ := b.PrefillRoom(clock, 10, within); got != idle {
				t.Errorf("%v (status %d): backend %d's room after the call %d; want %d (its prompt taken out)", path, w.Code, i, got, idle)
			}
		}
	}
}
