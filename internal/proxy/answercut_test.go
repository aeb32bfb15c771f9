package proxy_test

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/outcome"
)

// closingWriter is a client that closes its connection as soon as it has
// the answer's last byte: its request context is cancelled on the write
// that completes what the client waits for (all of want bytes, or the
// bytes holding end). So is a lone flight leader's: its client's close
// ends the flight's context (gateway/coalesce.go) while the upstream
// call's relay is still settling the answer.
type closingWriter struct {
	*httptest.ResponseRecorder
	want   int    // bytes of a whole answer; 0: wait for end
	end    string // the stream's end ("data: [DONE]")
	cancel context.CancelFunc
}

func (w *closingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseRecorder.Write(p)
	if w.want > 0 && w.Body.Len() >= w.want || w.end != "" && strings.Contains(w.Body.String(), w.end) {
		w.cancel()
	}
	return n, err
}

func (w *closingWriter) Flush() {}

// A client that closes its connection once it has the whole answer cut
// nothing: the request is a success (a tenant ramp completion, a cache
// fill, a 200 on the access line). Before, a cancel that came after the
// last byte was written and before the relay judged the answer turned a
// whole 200 into a client gone (Result.Outcome Ignored): for JSON in the
// microseconds before relayAnswer's check, for a stream while the relay
// waited for the backend's end of body after [DONE].
func TestClientClosingAfterTheAnswerCutsNothing(t *testing.T) {
	const answer = `{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`
	t.Run("JSON", func(t *testing.T) {
		b := replyBackend(t, reply{ct: "application/json", body: answer})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w := &closingWriter{ResponseRecorder: httptest.NewRecorder(), want: len(answer), cancel: cancel}
		res := forwarder(t, nil).Forward(ctx, w, request(t, openai.APIChat, false), fixedSelector{b})
		if w.Body.String() != answer {
			t.Fatalf("relayed %q; want the answer", w.Body.String())
		}
		if got := res.Outcome(); got != outcome.Success || res.Err != nil {
			t.Fatalf("outcome %v (err %v); want a success: the client had the whole answer", got, res.Err)
		}
	})
	t.Run("stream", func(t *testing.T) {
		// The end of body comes later (a backend whose last chunk is a
		// write of its own): the relay is still reading when the client,
		// which has [DONE], closes.
		b := sseBackend(t, doneEvents, gate(nil))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w := &closingWriter{ResponseRecorder: httptest.NewRecorder(), end: "data: [DONE]", cancel: cancel}
		res := forwarder(t, nil).Forward(ctx, w, chatStream(t, &starts{}), fixedSelector{b})
		if w.Body.String() != doneEvents {
			t.Fatalf("relayed %q; want the events and nothing after", w.Body.String())
		}
		if got := res.Outcome(); got != outcome.Success || res.Err != nil {
			t.Fatalf("outcome %v (err %v); want a success: the client had the whole stream", got, res.Err)
		}
	})
}

// A stream request answered in JSON too large to hold (over 256 KiB: a
// flight's call, which takes either shape, or a long transcript) is
// relayed as it comes; one that then breaks off was no answer, and the
// tenant ramp is not told it answered. Before, Answered was told at the
// commit, before the rest was read.
func TestAnsweredOnlyWhenTheLargeAnswerEnded(t *testing.T) {
	big := `{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		strings.Repeat("a", 300<<10) + `"},"finish_reason":"stop"}]}`
	answeredOnlyWhenEnded(t, reply{ct: "application/json", body: big}, 100)
}

// A stream is asked uncompressed whatever the client accepts, so its
// events are checked as they pass: a backend that compresses when asked
// and whose stream begins with its in-band error tells no first token.
// Before, the client's gzip went upstream, the compressed stream was
// relayed unchecked (relayRaw) and its first bytes were told as a prompt
// first token: the tenant ramp counted the failed stream as an answer.
func TestStreamAskedUncompressed(t *testing.T) {
	asked := make(chan string, 1)
	b := backend(t, func(w http.ResponseWriter, r *http.Request) {
		asked <- r.Header.Get("Accept-Encoding")
		w.Header().Set("Content-Type", "text/event-stream")
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			_, _ = io.WriteString(w, chatErr)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = io.WriteString(zw, chatErr)
		_ = zw.Close()
	})
	var s starts
	req := chatStream(t, &s)
	req.Header.Set("Accept-Encoding", "gzip, br")
	w := httptest.NewRecorder()
	forwarder(t, nil).Forward(context.Background(), w, req, fixedSelector{b})
	if ae := <-asked; ae != "identity" {
		t.Fatalf("a stream went upstream with Accept-Encoding %q; want identity", ae)
	}
	if got := s.told.Load(); got != 0 || !strings.HasPrefix(w.Body.String(), chatErr) {
		t.Fatalf("Started told %d first tokens, relayed %q; want none and the error event", got, w.Body.String())
	}
}

// A guard (it passes on the old code too): a non-streaming 2xx whose
// body is not a JSON object, garbage or cut short (a clean end of body
// after half an object, or fewer bytes than its length), is the
// backend's failure (Result.Outcome), so the tenant ramp does not count
// it (admission.Ticket.Ended); only a whole object counts.
func TestBrokenAnswerIsNoSuccess(t *testing.T) {
	const whole = `{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`
	for _, c := range []struct {
		name, body string
		length     int // a Content-Length stated; 0: chunked
		want       outcome.Outcome
	}{
		{"garbage", "<html>oops</html>", 0, outcome.Failure},
		{"half an object, clean end", whole[:40], 0, outcome.Failure},
		{"fewer bytes than its length", whole[:40], len(whole), outcome.Failure},
		{"whole", whole, 0, outcome.Success},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := replyBackend(t, reply{ct: "application/json", body: c.body, length: c.length, chunked: true})
			res := forwarder(t, nil).Forward(context.Background(), httptest.NewRecorder(), request(t, openai.APIChat, false), fixedSelector{b})
			if got := res.Outcome(); got != c.want {
				t.Fatalf("outcome %v (err %v); want %v", got, res.Err, c.want)
			}
		})
	}
}
