package proxy_test

// Shared rigs of the tests of what a backend's answer tells (Started,
// Result.Outcome, the latency learnt): backends that send a given script,
// a recorder of Started, client writers that say what reached them.

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// Parts of the answers the tests' backends send.
const (
	ping       = ": ping\n\n" // a keep-alive comment
	tokenEvent = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"
	doneEvents = tokenEvent + "data: [DONE]\n\n" // a whole chat stream
	chatErr    = "data: {\"error\":{\"message\":\"engine failed\",\"type\":\"server_error\"}}\n\n"
)

// backend is an endpoint for a test server running h (after reading the
// request's body), closed when the test ends.
func backend(t *testing.T, h http.HandlerFunc) *endpoint.Backend {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	b, err := endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gate, in a stream backend's script, holds the stream until it is
// closed; the stream ends there instead when its request does (the
// client left) or after a minute (a hang guard). A nil gate holds until
// the request ends: a backend that queues.
type gate <-chan struct{}

// sseBackend is a backend that answers every request with a 200 event
// stream sent as script says: each string is written and, unless it ends
// the answer, flushed; each gate is waited on.
func sseBackend(t *testing.T, script ...any) *endpoint.Backend {
	t.Helper()
	for _, s := range script {
		switch s.(type) {
		case string, gate:
		default:
			t.Fatalf("a script holds strings and gates, not %T", s)
		}
	}
	return backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i, s := range script {
			switch s := s.(type) {
			case string:
				_, _ = io.WriteString(w, s)
				if i < len(script)-1 {
					w.(http.Flusher).Flush()
				}
			case gate:
				select {
				case <-s:
				case <-r.Context().Done():
					return
				case <-time.After(time.Minute): // hang guard
					return
				}
			}
		}
	})
}

// reply is a test backend's whole answer, written at once.
type reply struct {
	status int    // 0: 200
	ct     string // Content-Type
	gzip   bool   // body is gzipped: Content-Encoding gzip whatever was asked
	body   string
	// length, when set, is the Content-Length stated; more than body's:
	// the server closes the connection after body (an answer broken off).
	length  int
	chunked bool // flushed before it ends: sent chunked, its length unstated
}

// replyBackend is a backend that answers every request with a.
func replyBackend(t *testing.T, a reply) *endpoint.Backend {
	t.Helper()
	return backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", a.ct)
		if a.gzip {
			w.Header().Set("Content-Encoding", "gzip")
		}
		if a.length > 0 {
			w.Header().Set("Content-Length", strconv.Itoa(a.length))
		}
		if a.status != 0 {
			w.WriteHeader(a.status)
		}
		_, _ = io.WriteString(w, a.body)
		if a.chunked {
			w.(http.Flusher).Flush()
		}
	})
}

// answeredOnlyWhenEnded forwards a stream request that takes either
// shape (Request.AnyShape) to a backend answering whole, then to one
// whose answer breaks off short bytes before whole's end (its length
// says more: the server closes after what it sent). The 200 is relayed
// as it is (Content-Encoding too) both times; Started is told Answered,
// and the Result has no error, for the whole answer alone.
func answeredOnlyWhenEnded(t *testing.T, whole reply, short int) {
	t.Helper()
	ce := ""
	if whole.gzip {
		ce = "gzip"
	}
	for _, c := range []struct {
		name     string
		cut      bool
		answered int64
	}{
		{"whole", false, 1},
		{"broken off", true, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			sent := whole
			sent.length = len(whole.body)
			if c.cut {
				sent.body = whole.body[:len(whole.body)-short]
			}
			b := replyBackend(t, sent)
			var s starts
			req := chatStream(t, &s)
			req.AnyShape = true
			w := httptest.NewRecorder()
			res := forwarder(t, nil).Forward(context.Background(), w, req, fixedSelector{b})
			if w.Code != http.StatusOK || w.Header().Get("Content-Encoding") != ce {
				t.Fatalf("status %d, Content-Encoding %q; want the 200 relayed as it came", w.Code, w.Header().Get("Content-Encoding"))
			}
			if c.cut != (res.Err != nil) {
				t.Fatalf("err %v; want one only when the answer broke off", res.Err)
			}
			if got := s.answered.Load(); got != c.answered {
				t.Fatalf("Started told Answered %d times; want %d", got, c.answered)
			}
		})
	}
}

// forwarder is a Forwarder over a transport of its own with minute-long
// bounds (hang guards); adjust, when not nil, changes its Options.
func forwarder(t *testing.T, adjust func(*proxy.Options)) *proxy.Forwarder {
	t.Helper()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	o := proxy.Options{Transport: transport,
		Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Minute}}
	if adjust != nil {
		adjust(&o)
	}
	return proxy.NewForwarder(o)
}

// newClock is a clock for a forwarder the test moves (clocked).
func newClock() *proxy.StepClock {
	return proxy.NewStepClock(time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC))
}

// clocked adjusts a forwarder to read the time from clock, with a total
// bound of an hour that the clock's steps do not reach.
func clocked(clock *proxy.StepClock) func(*proxy.Options) {
	return func(o *proxy.Options) {
		o.Now, o.Timeouts.Total = clock.Now, time.Hour
	}
}

// request is a request for model m of api (chat: openai.APIChat), its
// body released when the test ends.
func request(t *testing.T, api openai.API, stream bool) *proxy.Request {
	t.Helper()
	raw, path := `{"model":"m","messages":[{"role":"user","content":"hello"}],"stream":`+strconv.FormatBool(stream)+`}`, "/v1/chat/completions"
	if api == openai.APIResponses {
		raw, path = `{"model":"m","input":"hello","stream":`+strconv.FormatBool(stream)+`}`, "/v1/responses"
	}
	body, err := proxy.NewBodyPool(nil).ReadBody(strings.NewReader(raw), int64(len(raw)), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(body.Release)
	return &proxy.Request{Path: path, Header: http.Header{}, Body: body,
		Peek: openai.Peek{Model: "m", Stream: stream, API: api}, ServeModel: "m"}
}

// chatStream is a chat stream request that tells s (nil: nothing).
func chatStream(t *testing.T, s *starts) *proxy.Request {
	t.Helper()
	req := request(t, openai.APIChat, true)
	if s != nil {
		req.Started = s
	}
	return req
}

// forwardAsync forwards req in its own goroutine; its Result comes on the
// channel returned.
func forwardAsync(ctx context.Context, f *proxy.Forwarder, w http.ResponseWriter, req *proxy.Request, sel proxy.Selector) <-chan proxy.Result {
	results := make(chan proxy.Result, 1)
	go func() { results <- f.Forward(ctx, w, req, sel) }()
	return results
}

// starts counts what proxy.Request.Started is told.
type starts struct{ told, prompt, answered atomic.Int64 }

func (s *starts) Answered() { s.answered.Add(1) }

func (s *starts) FirstToken(prompt bool) {
	s.told.Add(1)
	if prompt {
		s.prompt.Add(1)
	}
}

// pingWriter is a client's ResponseWriter that says when the first bytes
// reached it.
type pingWriter struct {
	*httptest.ResponseRecorder
	once sync.Once
	got  chan struct{}
}

func newPingWriter() *pingWriter {
	return &pingWriter{ResponseRecorder: httptest.NewRecorder(), got: make(chan struct{})}
}

func (w *pingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseRecorder.Write(p)
	w.once.Do(func() { close(w.got) })
	return n, err
}

// awaitFirstBytes waits until the first bytes of results' request (a
// ping) reached w: the stream is committed.
func (w *pingWriter) awaitFirstBytes(t *testing.T, results <-chan proxy.Result) {
	t.Helper()
	select {
	case <-w.got:
	case res := <-results:
		t.Fatalf("the request ended before the ping reached the client: %v", res.Err)
	}
}
