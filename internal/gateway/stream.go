package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
)

// maxStatusWatchers bounds the /status/stream connections open at once:
// each costs a /status build per second. A few dashboards and a script
// or two fit; an accidental reload loop in a browser does not take the
// admin listener's CPU.
const maxStatusWatchers = 16

// statusEvery is how often /status/stream sends the document.
const statusEvery = time.Second

// statusWriteTimeout cuts a watcher that accepts no bytes for this long
// (a stopped laptop, a stuck proxy), so it does not hold its place, and
// its goroutine, forever: the admin listeners' one send timeout, /metrics'
// too (netguard.AdminSendTimeout).
const statusWriteTimeout = netguard.AdminSendTimeout

// statusStreams are the open /status/stream watchers. Each runs in its
// own request's handler goroutine (net/http owns it); it ends when its
// client leaves, when a write fails, or at CloseStreams, which waits
// for every one of them to return.
type statusStreams struct {
	tick Ticker

	mu      sync.Mutex
	n       int
	refused uint64 // asked while all places were taken (not at shutdown)
	closed  bool
	done    chan struct{} // closed by close
	wg      sync.WaitGroup
}

func newStatusStreams(tick Ticker) *statusStreams {
	if tick == nil {
		tick = realTicker
	}
	return &statusStreams{tick: tick, done: make(chan struct{})}
}

// enter takes a watcher's place; false when all are taken or the gateway
// is shutting down.
func (s *statusStreams) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.n >= maxStatusWatchers {
		s.refused++
		return false
	}
	s.n++
	s.wg.Add(1)
	return true
}

func (s *statusStreams) leave() {
	s.mu.Lock()
	s.n--
	s.mu.Unlock()
	s.wg.Done()
}

func (s *statusStreams) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// watchers is how many streams are open.
func (s *statusStreams) watchers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// refusals is how many streams were refused at maxStatusWatchers.
func (s *statusStreams) refusals() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// registerStreamMetrics exports the watchers against their bound, read at
// scrape time through g (tests swap g.streams before serving).
func (g *Gateway) registerStreamMetrics(reg prometheus.Registerer) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_status_stream_watchers",
			Help: "Open /status/stream connections; each costs a /status build per second."},
			func() float64 { return float64(g.streams.watchers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_status_stream_watchers_limit",
			Help: "Most /status/stream connections open at once; past it one is refused with 503 too_many_watchers."},
			func() float64 { return maxStatusWatchers }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_status_stream_refused_total",
			Help: "/status/stream connections refused with 503 too_many_watchers because all places were taken."},
			func() float64 { return float64(g.streams.refusals()) }))
}

// CloseStreams ends every /status/stream and refuses new ones; it returns
// when their handlers have. Shutdown calls it before closing the admin
// listener.
func (g *Gateway) CloseStreams() { g.streams.close() }

// serveStatusStream sends the /status document as a server-sent event
// ("event: status", the JSON on one data line) at once and then about
// every second, until the client leaves or the gateway shuts down.
func (g *Gateway) serveStatusStream(w http.ResponseWriter, r *http.Request) {
	// HEAD is a GET without the body, as on every other admin route
	// (openai.ReadOnly): the stream's headers, and no watcher slot taken.
	if !openai.ReadOnly(w, r) {
		return
	}
	if r.Method == http.MethodHead {
		streamHeaders(w.Header())
		w.WriteHeader(http.StatusOK)
		return
	}
	s := g.streams
	if !s.enter() {
		w.Header().Set("Retry-After", "5")
		writeError(w, &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "too_many_watchers",
			Message: "too many /status/stream watchers are open; close one or poll /status"})
		return
	}
	defer s.leave()
	tick, stop := s.tick(statusEvery)
	defer stop()
	streamHeaders(w.Header())
	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{}) // a kept-alive connection's next request starts without it
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	for {
		// admin.token is read per request; a stream is one request that
		// lasts: a reload that changes the token (rotated after a leak)
		// must end the streams the old one opened, not leave them reading
		// tenants and backend URLs for as long as they stay. The page
		// reconnects and asks for the new token.
		if adminRefusal(r, g.rt.Load().Config.Admin.Token) != nil {
			return
		}
		buf.Reset()
		buf.WriteString("event: status\ndata: ")
		if err := json.NewEncoder(&buf).Encode(g.status(r.Context())); err != nil { // one line, ends with \n
			return
		}
		buf.WriteString("\n")
		// Network deadlines are wall-clock, whatever clock the gateway
		// is given (as sendWriter's).
		rc.SetWriteDeadline(time.Now().Add(statusWriteTimeout))
		if _, err := w.Write(buf.Bytes()); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-tick:
		}
	}
}

// streamHeaders are /status/stream's answer's headers, GET's and HEAD's.
func streamHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a reverse proxy in front must not hold the events
}
