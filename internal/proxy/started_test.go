package proxy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/openai"
)

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
		{"200 stream", http.StatusOK, openai.APIChat, doneEvents, 1, 0, ""},
		{"500 as an event stream", http.StatusInternalServerError, openai.APIChat, chatErr, 0, 0, ""},
		{"200 whose first event is an error object", http.StatusOK, openai.APIChat, chatErr, 0, 0, ""},
		{"200 whose first event is a Responses error", http.StatusOK, openai.APIResponses,
			"event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"engine failed\",\"sequence_number\":0}\n\n", 0, 0, ""},
		// Tokens, then the backend's in-band error, in one read: the
		// engine started generating, so its first token is told.
		{"200 with a token before an error object", http.StatusOK, openai.APIChat,
			tokenEvent + chatErr, 1, 0, ""},
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
			ct := c.ct
			if ct == "" {
				ct = "text/event-stream"
			}
			b := replyBackend(t, reply{status: c.status, ct: ct, body: c.answer})
			var s starts
			req := request(t, c.api, true)
			req.Started = &s
			w := httptest.NewRecorder()
			forwarder(t, nil).Forward(context.Background(), w, req, fixedSelector{b})
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

// A keep-alive comment a backend (or a proxy in front of its engine)
// sends before the engine starts the stream commits it, but is no first
// token: Request.Started is told at the first event with data, and not at
// all when that is the backend's in-band error. The backend sends ": ping"
// alone, then the rest only once the client got the ping, so the two are
// read apart. Before, the ping was told as a prompt first token: the
// tenant ramp counted the failed stream as an answer (a completion), and
// its memory of prompt starts a slot the engine never ran.
func TestStartedNotToldAKeepAlive(t *testing.T) {
	for _, c := range []struct {
		name string
		rest string
		told int64
	}{
		{"ping, then an error event", chatErr, 0},
		{"ping, then a token", doneEvents, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newPingWriter()
			b := sseBackend(t, ping, gate(w.got), c.rest) // the rest once the client got the ping
			var s starts
			forwarder(t, nil).Forward(context.Background(), w, chatStream(t, &s), fixedSelector{b})
			if !strings.HasPrefix(w.Body.String(), ping) || !strings.Contains(w.Body.String(), c.rest) {
				t.Fatalf("relayed %q; want the ping and then %q", w.Body.String(), c.rest)
			}
			if got := s.told.Load(); got != c.told {
				t.Fatalf("Started told %d times (prompt %d); want %d", got, s.prompt.Load(), c.told)
			}
		})
	}
}
