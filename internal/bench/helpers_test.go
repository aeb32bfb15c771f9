package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: Run
// promises that every goroutine it starts has stopped when it returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// chatRequest is the part of a request body the fake servers read.
type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
	MaxTokens     int  `json:"max_tokens"`
	Stream        bool `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

func decodeChat(t testing.TB, r *http.Request) chatRequest {
	var req chatRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		t.Errorf("server: request body is not the expected JSON: %v", err)
	}
	// Reading to EOF lets the server notice a client hanging up, which
	// cancels r.Context().
	_, _ = io.Copy(io.Discard, r.Body)
	return req
}

func (c chatRequest) promptWords() int {
	if len(c.Messages) == 0 {
		return 0
	}
	return len(strings.Fields(c.Messages[0].Content))
}

// writeSSE streams an OpenAI-style answer of n content events, each flushed
// on its own, then a usage chunk and [DONE].
func writeSSE(w http.ResponseWriter, promptTokens, n int) {
	w.Header().Set("Content-Type", "text/event-stream")
	f := w.(http.Flusher)
	io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`+"\n\n")
	f.Flush()
	for i := range n {
		fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"w%d \"}}]}\n\n", i)
		f.Flush()
	}
	io.WriteString(w, `data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}`+"\n\n")
	fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n",
		promptTokens, n, promptTokens+n)
	io.WriteString(w, "data: [DONE]\n\n")
	f.Flush()
}

// writeJSONAnswer answers a non-streaming request.
func writeJSONAnswer(w http.ResponseWriter, promptTokens, n int) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`,
		promptTokens, n, promptTokens+n)
}

// okServer answers every request correctly, echoing the prompt size it
// counted and max_tokens as the completion, and tagging a backend header.
func okServer(t testing.TB) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := decodeChat(t, r)
		w.Header().Set("X-Sluice-Backend", "b1")
		if req.Stream {
			writeSSE(w, req.promptWords(), req.MaxTokens)
			return
		}
		writeJSONAnswer(w, req.promptWords(), req.MaxTokens)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// fastClock runs time speed times faster than the real clock: a plan of
// minutes replays in a fraction of a second, and every measurement is
// scaled the same way.
type fastClock struct {
	start time.Time
	speed float64
}

func (c fastClock) Now() time.Time {
	return c.start.Add(time.Duration(float64(time.Since(c.start)) * c.speed))
}

func (c fastClock) Wait(ctx context.Context, t time.Time) error {
	return sleepCtx(ctx, time.Duration(float64(t.Sub(c.Now()))/c.speed))
}

// runOK runs cfg and fails the test on error.
func runOK(t testing.TB, cfg Config) *Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// gatedClock reads the real time, but a deadline within the hour (a
// request's Timeout) passes only once gate is closed: whether a request
// timed out is the test's decision, never the machine's pace. Deadlines
// further away (the drain's bound) are never reached; the drain ends when
// the requests do.
type gatedClock struct{ gate <-chan struct{} }

func (gatedClock) Now() time.Time { return time.Now() }

func (c gatedClock) Wait(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	gate := c.gate
	if d > time.Hour {
		gate = nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-gate:
		return nil
	}
}

// settledTransport closes all once n exchanges have settled: a hanging one
// (by the predicate) when its response headers arrived, any other when the
// client closed its body (the answer read, its record classified), or when
// the round trip failed.
type settledTransport struct {
	base    http.RoundTripper
	hanging func(*http.Request) bool
	left    atomic.Int64
	all     chan struct{}
}

func newSettledTransport(base http.RoundTripper, n int, hanging func(*http.Request) bool) *settledTransport {
	s := &settledTransport{base: base, hanging: hanging, all: make(chan struct{})}
	s.left.Store(int64(n))
	return s
}

func (s *settledTransport) settle() {
	if s.left.Add(-1) == 0 {
		close(s.all)
	}
}

func (s *settledTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(r)
	if err != nil || s.hanging(r) {
		s.settle()
		return resp, err
	}
	resp.Body = &onClose{ReadCloser: resp.Body, f: s.settle}
	return resp, nil
}

func (s *settledTransport) CloseIdleConnections() {
	if c, ok := s.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// onClose calls f on the first Close.
type onClose struct {
	io.ReadCloser
	once sync.Once
	f    func()
}

func (o *onClose) Close() error {
	err := o.ReadCloser.Close()
	o.once.Do(o.f)
	return err
}
