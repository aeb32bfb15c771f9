package gateway

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// flights coalesces identical cacheable requests in flight: the first one
// (the leader) is admitted and sends one upstream request; the ones that
// arrive before it ends (followers) get the same answer without using any
// backend capacity — as it streams in when they asked for the same shape,
// converted at the end when one wants a stream and the other JSON.
//
// The upstream request runs on a goroutine the flight owns, writing into the
// flight's buffer; every client, leader included, relays from the buffer.
// So a client that disconnects — follower or leader — cancels nothing while
// others still wait; the upstream request is cancelled when the last one
// leaves (unless it is a background revalidation, which runs to its end).
type flights struct {
	mu      sync.Mutex
	m       map[string]*flight
	metrics *cache.Metrics
}

func newFlights(m *cache.Metrics) *flights {
	return &flights{m: map[string]*flight{}, metrics: m}
}

// flight is one shared upstream call. Its fields are guarded by mu; wake is
// closed and replaced whenever status, buf or done change.
type flight struct {
	key string

	mu     sync.Mutex
	wake   chan struct{}
	header http.Header // snapshot taken at WriteHeader
	status int
	buf    []byte
	done   bool
	err    error        // why it ended without a response; followers then go alone
	res    proxy.Result // the upstream call's result, once done

	// Guarded by flights.mu.
	waiters    int
	background bool
	cancel     context.CancelFunc
}

// join returns the flight for key, creating it (leader = true) when none
// is in flight. The caller must leave it.
func (fs *flights) join(key string, background bool) (f *flight, leader bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f = fs.m[key]; f != nil {
		f.waiters++
		fs.metrics.Coalesced()
		return f, false
	}
	f = &flight{key: key, wake: make(chan struct{}), background: background}
	if !background {
		f.waiters = 1
	}
	fs.m[key] = f
	return f, true
}

// inFlight reports whether a call for key is running.
func (fs *flights) inFlight(key string) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.m[key] != nil
}

// leave drops a waiter; the last one out cancels the upstream call.
func (fs *flights) leave(f *flight) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f.waiters--
	if f.waiters > 0 || f.background {
		return
	}
	if f.cancel != nil {
		f.cancel()
	}
	fs.forget(f)
}

// forget removes f from the map so newcomers start a new flight; fs.mu held.
func (fs *flights) forget(f *flight) {
	if fs.m[f.key] == f {
		delete(fs.m, f.key)
	}
}

// abort ends a flight that never started upstream (its leader was refused
// admission or left): followers go on their own.
func (fs *flights) abort(f *flight, err error) {
	fs.mu.Lock()
	fs.forget(f)
	fs.mu.Unlock()
	f.finish(proxy.Result{Err: err})
}

// start runs call on a goroutine owned by the flight, with a context that
// keeps ctx's values but is cancelled only when every waiter has left.
func (fs *flights) start(ctx context.Context, f *flight, call func(ctx context.Context, w http.ResponseWriter) proxy.Result) {
	up, cancel := context.WithCancel(context.WithoutCancel(ctx))
	fs.mu.Lock()
	f.cancel = cancel
	fs.mu.Unlock()
	go func() {
		defer cancel()
		res := call(up, &flightWriter{f: f, h: http.Header{}})
		fs.mu.Lock()
		fs.forget(f)
		fs.mu.Unlock()
		f.finish(res)
	}()
}

func (f *flight) finish(res proxy.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.res, f.done = res, true
	if f.status == 0 {
		f.err = res.Err
		if f.err == nil {
			f.err = proxy.ErrUpstream
		}
	}
	f.signal()
}

// signal wakes every waiter; f.mu held.
func (f *flight) signal() {
	close(f.wake)
	f.wake = make(chan struct{})
}

// flightWriter is the http.ResponseWriter the upstream call relays into.
type flightWriter struct {
	f *flight
	h http.Header
}

func (w *flightWriter) Header() http.Header { return w.h }

func (w *flightWriter) WriteHeader(code int) {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	if w.f.status == 0 {
		w.f.header, w.f.status = w.h.Clone(), code
		w.f.signal()
	}
}

func (w *flightWriter) Write(p []byte) (int, error) {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	if w.f.status == 0 {
		w.f.header, w.f.status = w.h.Clone(), http.StatusOK
	}
	w.f.buf = append(w.f.buf, p...)
	w.f.signal()
	return len(p), nil
}

// Flush is a no-op: every Write already wakes the readers.
func (w *flightWriter) Flush() {}

// snapshot returns what the flight has now and a channel closed on change.
func (f *flight) snapshot() (status int, buf []byte, done bool, err error, wake <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, f.buf, f.done, f.err, f.wake
}

// relayOutcome is how a client's relay from a flight ended.
type relayOutcome int

const (
	relayed relayOutcome = iota // the client got the flight's answer
	goAlone                     // the flight has no answer for it: send its own request
	gone                        // the client left
)

// relay writes the flight's answer to w in the shape peek asks for, with
// X-Cache: xcache. It returns the status sent.
func (f *flight) relay(ctx context.Context, w http.ResponseWriter, peek openai.Peek, reqID, xcache string) (int, relayOutcome) {
	// Wait for the head (or the end).
	for {
		status, _, done, _, wake := f.snapshot()
		if status != 0 {
			break
		}
		if done {
			return 0, goAlone
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, gone
		}
	}
	f.mu.Lock()
	status, header := f.status, f.header
	f.mu.Unlock()
	upstreamStream := strings.HasPrefix(header.Get("Content-Type"), "text/event-stream")
	if status == http.StatusOK && upstreamStream != peek.Stream {
		return f.relayConverted(ctx, w, peek, xcache)
	}

	h := w.Header()
	for k, v := range header {
		h[k] = v
	}
	h.Set("X-Request-Id", reqID)
	h.Set("X-Cache", xcache)
	w.WriteHeader(status)
	flusher, _ := w.(http.Flusher)
	if upstreamStream && flusher != nil {
		flusher.Flush()
	}
	off := 0
	for {
		_, buf, done, _, wake := f.snapshot()
		if len(buf) > off {
			if _, err := w.Write(buf[off:]); err != nil {
				return status, gone
			}
			off = len(buf)
			if upstreamStream && flusher != nil {
				flusher.Flush()
			}
			continue // more may have arrived while writing
		}
		if done {
			return status, relayed
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return status, gone
		}
	}
}

// relayConverted waits for the whole answer and replays it as an entry:
// a stream for a JSON request's answer, or JSON for a stream's.
func (f *flight) relayConverted(ctx context.Context, w http.ResponseWriter, peek openai.Peek, xcache string) (int, relayOutcome) {
	for {
		_, _, done, _, wake := f.snapshot()
		if done {
			break
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, gone
		}
	}
	f.mu.Lock()
	e := entryFrom(f.status, f.header.Get("Content-Type"), f.buf, f.res.Err == nil)
	f.mu.Unlock()
	if e == nil {
		return 0, goAlone // incomplete: nothing to convert
	}
	status, ok := replay(w, e, peek, 0, xcache)
	if !ok {
		return 0, goAlone
	}
	return status, relayed
}
