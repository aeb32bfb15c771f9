package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// starts counts what proxy.Request.Started is told.
type starts struct{ told, prompt, answered atomic.Int64 }

func (s *starts) Answered() { s.answered.Add(1) }

func (s *starts) FirstToken(prompt bool) {
	s.told.Add(1)
	if prompt {
		s.prompt.Add(1)
	}
}

// Request.Started (the admission ticket: a tenant ramp's probe grows the
// base on a prompt first token, and the ramp counts an answered stream
// as a completion) is told a stream's first token, and only a token: an
// error answer sent as an event stream (a 500 with text/event-stream,
// relayed raw) is no start of generation, and neither is a 200 stream
// whose first event is the backend's in-band error (chat's error object,
// the Responses API's "error" event). Told it, a probe answered at once
// by a failing engine counted a slot in the ramp's base that the engine
// never started anything in.
func TestStartedToldOnlyAFirstToken(t *testing.T) {
	const chatErr = "data: {\"error\":{\"message\":\"engine failed\",\"type\":\"server_error\"}}\n\n"
	for _, c := range []struct {
		name   string
		status int
		api    openai.API
		answer string
		told   int64
		// answered: told Answered (a 2xx answer without events: JSON).
		answered int64
		ct       string // the answer's Content-Type; "" an event stream
	}{
		{"200 stream", http.StatusOK, openai.APIChat, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n", 1, 0, ""},
		{"500 as an event stream", http.StatusInternalServerError, openai.APIChat, chatErr, 0, 0, ""},
		{"200 whose first event is an error object", http.StatusOK, openai.APIChat, chatErr, 0, 0, ""},
		{"200 whose first event is a Responses error", http.StatusOK, openai.APIResponses,
			"event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"engine failed\",\"sequence_number\":0}\n\n", 0, 0, ""},
		// Tokens, then the backend's in-band error, in one read: the
		// engine started generating, so its first token is told.
		{"200 with a token before an error object", http.StatusOK, openai.APIChat,
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n" + chatErr, 1, 0, ""},
		{"200 with a Responses token before its error", http.StatusOK, openai.APIResponses,
			"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"m1\",\"output_index\":0,\"content_index\":0,\"delta\":\"hi\",\"sequence_number\":0}\n\n" +
				"event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"engine failed\",\"sequence_number\":1}\n\n", 1, 0, ""},
		// A backend that ignored "stream": its JSON answer, relayed as
		// events, is served (the tenant ramp's completion) with no first
		// token to judge. Told nothing, the ramp counted it as a failure.
		{"200 JSON for a stream request", http.StatusOK, openai.APIChat,
			`{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`,
			0, 1, "application/json"},
		{"500 JSON", http.StatusInternalServerError, openai.APIChat, `{"error":{"message":"engine failed","type":"server_error"}}`, 0, 0, "application/json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				ct := c.ct
				if ct == "" {
					ct = "text/event-stream"
				}
				w.Header().Set("Content-Type", ct)
				w.WriteHeader(c.status)
				_, _ = io.WriteString(w, c.answer)
			}))
			t.Cleanup(srv.Close)
			b, err := endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{})
			if err != nil {
				t.Fatal(err)
			}
			transport := http.DefaultTransport.(*http.Transport).Clone()
			t.Cleanup(transport.CloseIdleConnections)
			f := proxy.NewForwarder(proxy.Options{Transport: transport,
				Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Minute}})
			raw, path := `{"model":"m","messages":[{"role":"user","content":"hello"}],"stream":true}`, "/v1/chat/completions"
			if c.api == openai.APIResponses {
				raw, path = `{"model":"m","input":"hello","stream":true}`, "/v1/responses"
			}
			body, err := proxy.NewBodyPool(nil).ReadBody(strings.NewReader(raw), int64(len(raw)), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer body.Release()
			var s starts
			w := httptest.NewRecorder()
			f.Forward(context.Background(), w, &proxy.Request{Path: path, Header: http.Header{},
				Body: body, Peek: openai.Peek{Model: "m", Stream: true, API: c.api}, ServeModel: "m", Started: &s}, fixedSelector{b})
			if w.Code != c.status {
				t.Fatalf("status %d, want %d", w.Code, c.status)
			}
			if got := s.told.Load(); got != c.told {
				t.Fatalf("Started told %d times (prompt %d); want %d", got, s.prompt.Load(), c.told)
			}
			if got := s.answered.Load(); got != c.answered {
				t.Fatalf("Started told Answered %d times; want %d", got, c.answered)
			}
		})
	}
}

// pingWriter is a client's ResponseWriter that says when the first bytes
// reached it.
type pingWriter struct {
	*httptest.ResponseRecorder
	once sync.Once
	got  chan struct{}
}

func (w *pingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseRecorder.Write(p)
	w.once.Do(func() { close(w.got) })
	return n, err
}

// A keep-alive comment a backend (or a proxy in front of its engine)
// sends before the engine starts the stream commits it, but is no first
// token: Request.Started is told at the first event with data, and not at
// all when that is the backend's in-band error. The backend sends ": ping"
// alone, then the rest only once the client got the ping, so the two are
// read apart. Before, the ping was told as a prompt first token: the
// tenant ramp counted the failed stream as an answer (a completion), and
// its memory of prompt starts a slot the engine never ran.
func TestStartedNotToldAKeepAlive(t *testing.T) {
	const chatErr = "data: {\"error\":{\"message\":\"engine failed\",\"type\":\"server_error\"}}\n\n"
	const chunk = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"
	for _, c := range []struct {
		name string
		rest string
		told int64
	}{
		{"ping, then an error event", chatErr, 0},
		{"ping, then a token", chunk, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := &pingWriter{ResponseRecorder: httptest.NewRecorder(), got: make(chan struct{})}
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				rw.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(rw, ": ping\n\n")
				rw.(http.Flusher).Flush()
				select {
				case <-w.got:
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(rw, c.rest)
			}))
			t.Cleanup(srv.Close)
			b, err := endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{})
			if err != nil {
				t.Fatal(err)
			}
			transport := http.DefaultTransport.(*http.Transport).Clone()
			t.Cleanup(transport.CloseIdleConnections)
			f := proxy.NewForwarder(proxy.Options{Transport: transport,
				Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Minute}})
			raw := `{"model":"m","messages":[{"role":"user","content":"hello"}],"stream":true}`
			body, err := proxy.NewBodyPool(nil).ReadBody(strings.NewReader(raw), int64(len(raw)), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer body.Release()
			var s starts
			f.Forward(context.Background(), w, &proxy.Request{Path: "/v1/chat/completions", Header: http.Header{},
				Body: body, Peek: openai.Peek{Model: "m", Stream: true}, ServeModel: "m", Started: &s}, fixedSelector{b})
			if !strings.HasPrefix(w.Body.String(), ": ping\n\n") || !strings.Contains(w.Body.String(), c.rest) {
				t.Fatalf("relayed %q; want the ping and then %q", w.Body.String(), c.rest)
			}
			if got := s.told.Load(); got != c.told {
				t.Fatalf("Started told %d times (prompt %d); want %d", got, s.prompt.Load(), c.told)
			}
		})
	}
}
