package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// countingWriter is a client that takes every byte at once and signals
// when it has had want of them.
type countingWriter struct {
	discardWriter
	want int
	got  chan struct{}
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.n < w.want && w.n+len(p) >= w.want {
		close(w.got)
	}
	return w.discardWriter.Write(p)
}

// A backend that got ahead of its relay once (a burst of events read in
// 32 KiB blocks, nearly every block cutting an event in two) and then
// waits: the relay holds its read buffer, 32 KiB, while the stream waits.
// It used to hold a second buffer too, the check's copy of each cut
// event with the rest of its block (~40 KiB a stream, kept to the
// stream's end: 1,000 such streams held 40 MiB more, outside any
// budget or gauge), and the peek's 4 KiB after it was replayed.
func TestHeldStreamHoldsOneReadBuffer(t *testing.T) {
	const streams = 100
	ev := "data: {\"choices\":[{\"delta\":{\"content\":\"" + strings.Repeat("x", 900) + "\"}}]}\n\n"
	const events = 300 // ~280 KiB: many 32 KiB reads
	var counted atomic.Int64
	rig := newHeldStreams(t, streams, func(w http.ResponseWriter, _ *http.Request) bool {
		for range events {
			io.WriteString(w, ev)
		}
		w.(http.Flusher).Flush()
		return true
	}, "data: [DONE]\n\n", func(o *proxy.Options) { o.RelayBuffers = &counted })

	var before, held runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range streams {
		w := &countingWriter{discardWriter: discardWriter{h: http.Header{}}, want: events * len(ev), got: make(chan struct{})}
		rig.start(t, w, http.Header{}, func(res proxy.Result) error {
			if res.Err != nil || w.n != events*len(ev)+len("data: [DONE]\n\n") {
				return fmt.Errorf("stream ended with %v after %d bytes", res.Err, w.n)
			}
			return nil
		})
		<-w.got // the burst is relayed; the relay waits for the backend
	}
	runtime.GC()
	runtime.ReadMemStats(&held)
	perStream := (int64(held.HeapAlloc) - int64(before.HeapAlloc)) / streams
	// The gauge (sluice_relay_buffer_bytes) counts every held stream's
	// 32 KiB buffer, and nothing once they end.
	if got, want := counted.Load(), int64(streams*32<<10); got != want {
		t.Errorf("relay buffers counted while held: %d bytes, want %d", got, want)
	}
	rig.end(t)
	if got := counted.Load(); got != 0 {
		t.Errorf("relay buffers counted after the streams ended: %d bytes, want 0", got)
	}
	// Each stream: the relay's 32 KiB read buffer, the backend's and the
	// transport's connection (net/http's buffers, 4 KiB each way on
	// both sides), the request: measured 73 KiB (113 before).
	t.Logf("heap per held stream: %.1f KiB", float64(perStream)/1024)
	if limit := int64(90 << 10); perStream > limit {
		t.Errorf("a held stream keeps %.1f KiB of heap, want at most %d (its relay's read buffer is 32)", float64(perStream)/1024, limit>>10)
	}
}

// recordingWriter keeps what the relay wrote.
type recordingWriter struct {
	h   http.Header
	buf strings.Builder
}

func (w *recordingWriter) Header() http.Header         { return w.h }
func (w *recordingWriter) WriteHeader(int)             {}
func (w *recordingWriter) Flush()                      {}
func (w *recordingWriter) Write(p []byte) (int, error) { return w.buf.WriteString(string(p)) }

// Events cut anywhere across reads, from a few bytes to 200 KiB (past the
// relay's 32 KiB read buffer, which grows for them), pass byte for byte;
// an event over the 256 KiB bound still ends the stream as malformed,
// after the whole events before it.
func TestRelayedEventsCutAcrossReads(t *testing.T) {
	event := func(n int) string {
		return "data: {\"choices\":[{\"delta\":{\"content\":\"" + strings.Repeat("y", n) + "\"}}]}\n\n"
	}
	var whole strings.Builder
	for i, n := range []int{3, 5000, 40 << 10, 7, 200 << 10, 1, 33 << 10, 100, 4000, 70 << 10} {
		whole.WriteString(event(n + i))
	}
	good := whole.String() + "data: [DONE]\n\n"
	over := whole.String() + event(300<<10) + "data: [DONE]\n\n"
	for name, tc := range map[string]struct {
		stream, want string
		fails        bool
	}{"whole": {good, good, false}, "over the bound": {over, whole.String(), true}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/event-stream")
			rest := tc.stream
			for i := 1; len(rest) > 0; i++ { // writes of odd sizes, each flushed: reads cut events anywhere
				n := min(len(rest), i*977%6000+1)
				io.WriteString(w, rest[:n])
				w.(http.Flusher).Flush()
				rest = rest[n:]
			}
		}))
		b, err := endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		transport := http.DefaultTransport.(*http.Transport).Clone()
		var counted atomic.Int64
		f := proxy.NewForwarder(proxy.Options{Transport: transport, RelayBuffers: &counted,
			Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Minute}})
		raw := `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`
		body, err := proxy.NewBodyPool(nil).ReadBody(strings.NewReader(raw), int64(len(raw)), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		w := &recordingWriter{h: http.Header{}}
		res := f.Forward(context.Background(), w, &proxy.Request{Path: "/v1/chat/completions", Header: http.Header{},
			Body: body, Peek: openai.Peek{Model: "m", Stream: true}, ServeModel: "m"}, fixedSelector{b})
		body.Release()
		got := w.buf.String()
		if tc.fails {
			if res.Err == nil {
				t.Errorf("%s: relayed without an error", name)
			}
			if !strings.HasPrefix(got, tc.want) || strings.Contains(got[len(tc.want):], "yyyy") {
				t.Errorf("%s: %d bytes relayed, want the %d bytes of whole events then an error event", name, len(got), len(tc.want))
			}
		} else if res.Err != nil || got != tc.want {
			t.Errorf("%s: err %v, %d bytes relayed (identical: %t), want %d", name, res.Err, len(got), got == tc.want, len(tc.want))
		}
		if n := counted.Load(); n != 0 {
			t.Errorf("%s: relay buffers still counted after the stream: %d bytes (grown for the 200 KiB event and given back)", name, n)
		}
		transport.CloseIdleConnections()
		srv.Close()
	}
}
