package proxy_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// Without a first-token bound a keep-alive comment commits the stream;
// a client that leaves before the first data (an SDK's read timeout on a
// backend that pings while it queues) ends a stream that never started.
// Its backend's time to first token is then at least the wait (as for a
// silent backend the client left, failEarly), not the ping's: before, the
// end released the call with the commit's time (the ping's, about 0) as a
// success's latency, so the queueing backend looked the promptest of the
// pool to p2c, the adaptive limit and the hedge delay.
func TestClientLeavingAfterPingsLearnsNoPromptStart(t *testing.T) {
	clock := &stepNow{t: time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)}
	w := &pingWriter{ResponseRecorder: httptest.NewRecorder(), got: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rw.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(rw, ": ping\n\n")
		rw.(http.Flusher).Flush()
		<-r.Context().Done() // queues until the client leaves
	}))
	t.Cleanup(srv.Close)
	b, err := endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	f := proxy.NewForwarder(proxy.Options{Transport: transport, Now: clock.Now,
		Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Hour}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	results := make(chan proxy.Result, 1)
	go func() {
		results <- f.Forward(ctx, w, &proxy.Request{Path: "/v1/chat/completions", Header: http.Header{},
			Body: cutBody(t, true), Peek: openai.Peek{Model: "m", Stream: true}, ServeModel: "m"}, fixedSelector{b})
	}()
	select {
	case <-w.got: // the ping went out: the stream is committed
	case res := <-results:
		t.Fatalf("the request ended before the ping reached the client: %v", res.Err)
	}
	clock.advance(10 * time.Second)
	cancel() // the client leaves
	res := <-results
	if !errors.Is(res.Err, context.Canceled) || w.Body.String() != ": ping\n\n" {
		t.Fatalf("err %v, relayed %q; want the ping alone and the client gone", res.Err, w.Body.String())
	}
	if got := b.TypicalLatency(); got < 10*time.Second {
		t.Fatalf("time to first token learnt %v; want at least the 10 s the client waited, not the ping's", got)
	}
}

// A compressed JSON answer to a stream request (from a backend that
// compresses although every stream is asked uncompressed) is relayed
// raw; the tenant ramp is told it answered only once it ended whole, as
// relayAnswer tells it. Before, relayRaw told Answered at the commit, so
// one that broke off counted as a completion.
func TestAnsweredOnlyWhenTheCompressedAnswerEnded(t *testing.T) {
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = io.WriteString(zw, `{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"`+
		strings.Repeat("a", 4<<10)+`"},"finish_reason":"stop"}]}`)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	whole := zipped.Bytes()
	for _, c := range []struct {
		name     string
		cut      bool
		answered int64
	}{
		{"whole", false, 1},
		{"broken off", true, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Encoding", "gzip") // whatever it was asked
				sent := whole
				if c.cut {
					sent = whole[:len(whole)-10] // its length says more: the server closes after it
				}
				w.Header().Set("Content-Length", strconv.Itoa(len(whole)))
				_, _ = w.Write(sent)
			}))
			t.Cleanup(srv.Close)
			f, b := cutForwarder(t, srv)
			var s starts
			w := httptest.NewRecorder()
			res := f.Forward(context.Background(), w, &proxy.Request{Path: "/v1/chat/completions", Header: http.Header{},
				Body: cutBody(t, true), Peek: openai.Peek{Model: "m", Stream: true}, AnyShape: true, ServeModel: "m", Started: &s}, fixedSelector{b})
			if w.Code != http.StatusOK || w.Header().Get("Content-Encoding") != "gzip" {
				t.Fatalf("status %d, Content-Encoding %q; want the compressed 200 relayed", w.Code, w.Header().Get("Content-Encoding"))
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
