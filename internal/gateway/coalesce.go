package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
//
// The buffer holds at most the flight's limit (cache.max_entry). An answer
// up to it is kept whole, for the cache and for clients that join late or
// convert it. Past it the flight is over: nothing is captured, no client
// joins any more (followers not yet relaying go alone), and the buffer
// becomes a window from the slowest relaying client to the newest byte.
// The upstream body is then read only as fast as the window empties. When
// the window is full while some client already waits for data, the
// clients holding the window's start are detached (cut off) once that has
// lasted the lag grace (server.send_timeout): a lagging follower slows the
// others for at most that long and never makes the flight hold more. A
// client that stops reading altogether is also cut by the send timeout.
type flights struct {
	mu      sync.Mutex
	m       map[string]*flight
	metrics *cache.Metrics
	bg      *Background // counts the flights' goroutines; shutdown joins them
	// held is the bytes all flights hold (the flight gauge); peak its
	// high-water mark, which tests assert.
	held, peak atomic.Int64
}

// flightOpts are the bounds of a new flight.
type flightOpts struct {
	limit    int           // cache.max_entry: the most bytes the buffer holds
	lagGrace time.Duration // how long a full window may wait for a lagging client
	tenant   string        // the leader's
}

// account adds delta to the bytes held by flights.
func (fs *flights) account(delta int) {
	if delta == 0 {
		return
	}
	fs.metrics.Buffered(cache.BufferFlight, delta)
	n := fs.held.Add(int64(delta))
	for p := fs.peak.Load(); n > p && !fs.peak.CompareAndSwap(p, n); p = fs.peak.Load() {
	}
}

// Flights are the coalescing flights of a gateway; one set outlives
// reloads, so a request arriving just after one joins the call in flight.
type Flights = flights

// NewFlights makes an empty set of flights counting into m (may be nil),
// their goroutines counted in bg (joined at shutdown; nil: a Background
// of their own, which nobody joins).
func NewFlights(m *cache.Metrics, bg *Background) *Flights {
	if bg == nil {
		bg = NewBackground()
	}
	return &flights{m: map[string]*flight{}, metrics: m, bg: bg}
}

// errNoReaders stops an upstream call whose answer outgrew the flight
// while no client relays it: nobody would get the rest.
var errNoReaders = errors.New("gateway: flight answer too large to capture and nobody relaying it")

// flight is one shared upstream call. Its fields are guarded by mu; wake is
// closed and replaced whenever the head, the buffer, the readers or done
// change.
type flight struct {
	key     string
	opts    flightOpts // opts.tenant: an error answer is not shared with other tenants
	metrics *cache.Metrics
	fs      *flights

	mu      sync.Mutex
	wake    chan struct{}
	header  http.Header // snapshot taken at WriteHeader
	status  int
	encoded bool // the backend sent a Content-Encoding: not for other clients
	buf     flightBuf
	over    bool // the answer outgrew limit: not captured, no new reader
	done    bool
	err     error        // why it ended without a response; followers then go alone
	res     proxy.Result // the upstream call's result, once done
	// errEvent makes the in-band error event that ends a stream cut
	// short, for a client's request id: each client's stream ends with
	// its own (proxy.StreamErrorWriter), so it is kept aside, not in buf.
	errEvent func(reqID string) []byte
	// foreign makes the OpenAI error object that replaced a backend's
	// error body that was not JSON, for a client's request id, and
	// foreignNote is the log's note of that body (proxy.ForeignErrorWriter):
	// a follower gets, and logs under, its own id, not the leader's.
	foreign     func(reqID string) []byte
	foreignNote string
	readers     map[*reader]struct{}
	refs        int // joined clients not yet left, plus the upstream call
	// writerWaiting: the upstream call waits for readers to make room.
	writerWaiting bool
	// settle, set by a leader that left before the answer ended
	// (handSettle), settles its token reservation to the flight's result.
	settle func(proxy.Result)

	// Guarded by flights.mu.
	waiters    int
	background bool
	cancel     context.CancelFunc
}

// reader is one client relaying a flight's answer as it streams in: it
// keeps the bytes from off onwards in the buffer.
type reader struct {
	off      int64
	detached bool
}

// join returns the flight for key, creating it (leader = true) with opts
// when none is in flight. The caller must leave it.
func (fs *flights) join(key string, background bool, opts flightOpts) (f *flight, leader bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f = fs.m[key]; f != nil {
		f.waiters++
		f.ref(1)
		fs.metrics.Coalesced()
		return f, false
	}
	f = &flight{key: key, opts: opts, metrics: fs.metrics, fs: fs, wake: make(chan struct{}),
		background: background, readers: map[*reader]struct{}{}}
	f.buf.block = min(16<<10, max(opts.limit, 1))
	if !background {
		f.waiters = 1
		f.ref(1)
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
	f.waiters--
	if f.waiters <= 0 && !f.background {
		if f.cancel != nil {
			f.cancel()
		}
		fs.forget(f)
	}
	fs.mu.Unlock()
	f.ref(-1)
}

// forget removes f from the map so newcomers start a new flight; fs.mu held.
func (fs *flights) forget(f *flight) {
	if fs.m[f.key] == f {
		delete(fs.m, f.key)
	}
}

func (fs *flights) forgetLocked(f *flight) {
	fs.mu.Lock()
	fs.forget(f)
	fs.mu.Unlock()
}

// abort ends a flight that never started upstream (its leader was refused
// admission or left): followers go on their own.
func (fs *flights) abort(f *flight, err error) {
	fs.forgetLocked(f)
	f.finish(proxy.Result{Err: err})
}

// start runs call on a goroutine owned by the flight and counted in the
// gateway's Background (joined at shutdown), with a context that keeps
// ctx's values but is cancelled only when every waiter has left or when
// shutdown stops waiting.
func (fs *flights) start(ctx context.Context, f *flight, call func(ctx context.Context, w http.ResponseWriter) proxy.Result) {
	up, ended := fs.bg.start(context.WithoutCancel(ctx))
	up, cancel := context.WithCancel(up)
	fs.mu.Lock()
	f.cancel = cancel
	fs.mu.Unlock()
	f.ref(1)
	go func() {
		defer ended()
		defer cancel()
		defer f.ref(-1)
		res := call(up, &flightWriter{f: f, ctx: up, h: http.Header{}})
		fs.forgetLocked(f)
		f.finish(res)
	}()
}

// ref adds delta to the flight's users; the last one out releases the
// buffer.
func (f *flight) ref(delta int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refs += delta
	if f.refs == 0 {
		f.fs.account(-f.buf.release())
	}
}

func (f *flight) finish(res proxy.Result) {
	f.mu.Lock()
	f.res, f.done = res, true
	if f.status == 0 {
		f.err = res.Err
		if f.err == nil {
			f.err = proxy.ErrUpstream
		}
	}
	f.signal()
	settle := f.settle
	f.settle = nil
	f.mu.Unlock()
	if settle != nil { // out of the lock: a store round trip
		settle(res)
	}
}

// signal wakes every waiter; f.mu held.
func (f *flight) signal() {
	close(f.wake)
	f.wake = make(chan struct{})
}

// register adds a reader from the start of the answer, or returns nil when
// the start is no longer held.
func (f *flight) register() *reader {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.over {
		return nil
	}
	r := &reader{}
	f.readers[r] = struct{}{}
	return r
}

// unregister removes r (a client that left, finished, or converts).
func (f *flight) unregister(r *reader) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.readers[r]; ok {
		delete(f.readers, r)
		f.signal()
	}
}

// setHead records the response head; f.mu held.
func (f *flight) setHead(h http.Header, code int) {
	if f.status != 0 {
		return
	}
	f.header, f.status = h.Clone(), code
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		f.encoded = true // the backend ignored Accept-Encoding: identity
	}
	f.signal()
}

// makeRoom waits until n more bytes fit in the buffer, trimming what every
// reader has passed and detaching the readers that hold the window's start
// when a reader has waited for data for the lag grace; f.mu held (and
// released while waiting). It returns an error when the upstream call
// should stop: nobody relays the answer any more, or ctx ended.
func (f *flight) makeRoom(ctx context.Context, n int) error {
	var lagSince time.Time // when the full window first kept a reader waiting
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if !f.over {
			if int(f.buf.end)+n <= f.opts.limit {
				return nil
			}
			f.over = true // keeping the whole answer would cost more than limit
			f.metrics.CaptureAbandoned()
			f.signal() // converting followers go alone
		}
		if len(f.readers) == 0 {
			return errNoReaders
		}
		minOff, caughtUp := f.buf.end, false
		for r := range f.readers {
			minOff = min(minOff, r.off)
			caughtUp = caughtUp || r.off == f.buf.end
		}
		f.fs.account(-f.buf.dropBefore(minOff))
		if f.buf.held() == 0 || f.buf.held()+n <= f.opts.limit {
			return nil
		}
		var grace <-chan time.Time
		if caughtUp {
			// Wall-clock, like the send timeout it stands for.
			if lagSince.IsZero() {
				lagSince = time.Now()
			}
			left := f.opts.lagGrace - time.Since(lagSince)
			if left <= 0 && f.detachBehind(f.buf.end+int64(n)-int64(f.opts.limit)) {
				lagSince = time.Time{}
				continue
			}
			if left > 0 {
				if timer == nil {
					timer = time.NewTimer(left)
				} else {
					timer.Reset(left)
				}
				grace = timer.C
			}
		}
		wake := f.wake
		f.writerWaiting = true
		f.mu.Unlock()
		select {
		case <-wake:
		case <-grace:
		case <-ctx.Done():
		}
		f.mu.Lock()
		f.writerWaiting = false
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// detachBehind detaches the readers before off: they lag a whole window
// behind a reader that waits for data. f.mu held.
func (f *flight) detachBehind(off int64) bool {
	any := false
	for r := range f.readers {
		if r.off < off {
			r.detached = true
			delete(f.readers, r)
			f.metrics.FollowerDetached()
			any = true
		}
	}
	if any {
		f.signal()
	}
	return any
}

// flightWriter is the http.ResponseWriter the upstream call relays into.
type flightWriter struct {
	f   *flight
	ctx context.Context
	h   http.Header
}

func (w *flightWriter) Header() http.Header { return w.h }

func (w *flightWriter) WriteHeader(code int) {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	w.f.setHead(w.h, code)
}

func (w *flightWriter) Write(p []byte) (int, error) {
	f := w.f
	f.mu.Lock()
	f.setHead(w.h, http.StatusOK)
	wasOver := f.over
	err := f.makeRoom(w.ctx, len(p))
	if err == nil {
		f.buf.append(p)
		f.fs.account(len(p))
		f.signal()
	}
	over := f.over
	f.mu.Unlock()
	if over && !wasOver {
		f.fs.forgetLocked(f) // identical requests arriving now start their own flight
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush is a no-op: every Write already wakes the readers.
func (w *flightWriter) Flush() {}

// WriteStreamError keeps a cut stream's error event for the clients to
// write, each with its own request id, when they reach the end (follow).
func (w *flightWriter) WriteStreamError(event func(reqID string) []byte) {
	f := w.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setHead(w.h, http.StatusOK)
	f.errEvent = event
	f.signal()
}

// relayOutcome is how a client's relay from a flight ended.
type relayOutcome int

const (
	relayed  relayOutcome = iota // the client got the flight's answer
	goAlone                      // the flight has no answer for it: send its own request
	gone                         // the client left
	detached                     // the client lagged too far behind and was cut off mid-answer
)

// relay writes the flight's answer to w in the shape peek asks for, with
// X-Cache: xcache, for a client of tenant whose own Cache-Control for a
// stored answer is cc (its cache plan, copyFlightHead). r is the leader's
// reader, registered before the upstream call started; followers pass
// nil. It returns the status sent.
func (f *flight) relay(ctx context.Context, w http.ResponseWriter, r *reader, peek openai.Peek, tenant, reqID, xcache, cc string) (int, relayOutcome) {
	leader := r != nil
	if !leader {
		if r = f.register(); r == nil {
			return 0, goAlone
		}
	}
	defer f.unregister(r)
	status, header, encoded, out := f.awaitHead(ctx)
	if status == 0 {
		return 0, out
	}
	if !leader && (encoded || status != http.StatusOK && tenant != f.opts.tenant) {
		// Not this client's to have: an encoding it may not accept, or
		// another tenant's error.
		return 0, goAlone
	}
	upstreamStream := strings.HasPrefix(header.Get("Content-Type"), "text/event-stream")
	if status == http.StatusOK && upstreamStream != peek.Stream {
		f.unregister(r) // converting needs the whole answer, not a place in it
		return f.relayConverted(ctx, w, peek, xcache, cc)
	}

	h := w.Header()
	copyFlightHead(h, header, leader, cc)
	h.Set("X-Request-Id", reqID)
	h.Set("X-Cache", xcache)
	if foreign := f.foreignBody(leader, status); foreign != nil {
		// The backend's error page as an OpenAI error object naming
		// this follower's request id, whose length it has.
		body := foreign(reqID)
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
		w.WriteHeader(status)
		w.Write(body)
		return status, relayed
	}
	w.WriteHeader(status)
	var flusher http.Flusher // a stream is flushed as it comes
	if upstreamStream {
		flusher, _ = w.(http.Flusher)
	}
	if flusher != nil {
		flusher.Flush()
	}
	return status, f.follow(ctx, w, r, flusher, reqID)
}

// awaitHead waits for the flight's response head and returns it. status
// is 0 when there is none for this client: the flight ended without one
// (goAlone) or the client left first (gone).
func (f *flight) awaitHead(ctx context.Context) (status int, header http.Header, encoded bool, out relayOutcome) {
	f.mu.Lock()
	for f.status == 0 {
		if f.done {
			f.mu.Unlock()
			return 0, nil, false, goAlone
		}
		wake := f.wake
		f.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, nil, false, gone
		}
		f.mu.Lock()
	}
	status, header, encoded = f.status, f.header, f.encoded
	f.mu.Unlock()
	return status, header, encoded, relayed
}

// follow copies the flight's body to w from reader r's place as the
// upstream call adds to it, flushing after each write when flusher is
// set, until the body ends, the client leaves or r is detached for
// lagging; each write makes room for the upstream call if it waits. A
// stream cut short ends with its error event naming reqID, the client's.
func (f *flight) follow(ctx context.Context, w http.ResponseWriter, r *reader, flusher http.Flusher, reqID string) relayOutcome {
	for {
		f.mu.Lock()
		if r.detached {
			f.mu.Unlock()
			return detached
		}
		if r.off < f.buf.end {
			seg := f.buf.segment(r.off)
			f.mu.Unlock()
			if _, err := w.Write(seg); err != nil {
				return gone
			}
			if flusher != nil {
				flusher.Flush()
			}
			f.mu.Lock()
			r.off += int64(len(seg))
			if f.writerWaiting {
				f.signal() // room for the upstream call
			}
			f.mu.Unlock()
			continue
		}
		done, wake, errEvent := f.done, f.wake, f.errEvent
		f.mu.Unlock()
		if done {
			if errEvent != nil {
				w.Write(errEvent(reqID))
				if flusher != nil {
					flusher.Flush()
				}
			}
			return relayed
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return gone
		}
	}
}

// relayConverted waits for the whole answer and replays it as an entry:
// a stream for a JSON request's answer, or JSON for a stream's. cc is the
// client's own Cache-Control, as for relay.
func (f *flight) relayConverted(ctx context.Context, w http.ResponseWriter, peek openai.Peek, xcache, cc string) (int, relayOutcome) {
	f.mu.Lock()
	for !f.done && !f.over {
		wake := f.wake
		f.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, gone
		}
		f.mu.Lock()
	}
	var e *cache.Entry
	if !f.over {
		e = entryFrom(f.status, f.header.Get("Content-Type"), f.buf.bytes(), f.res.Err == nil)
	}
	// The client's Cache-Control (its own plan's max-age for an answer the
	// flight stores, the flight's no-store else), as the clients it
	// reaches in its shape get, and the gateway's own word on who answered.
	cc, model, backend := clientCacheControl(f.header.Get("Cache-Control"), cc), f.header.Get("X-Sluice-Model"), f.header["X-Sluice-Backend"]
	f.mu.Unlock()
	if e == nil {
		return 0, goAlone // too large to hold, or incomplete: nothing to convert
	}
	h := w.Header()
	if backend != nil {
		h["X-Sluice-Backend"] = backend
	}
	delete(h, "Content-Length") // replay's Write sets it
	status, ok := replay(w, nil, e, &peek, 0, headerValue(xcache), cc, model)
	if !ok {
		return 0, goAlone
	}
	return status, relayed
}
