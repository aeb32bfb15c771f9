package netguard

import (
	"net/http"
	"sync/atomic"

	"github.com/sluice-gw/sluice/internal/framing"
	"github.com/sluice-gw/sluice/internal/openai"
)

// Guard answers a request whose head was ambiguous (both Content-Length
// and Transfer-Encoding: internal/framing) with 400, and one with more
// than MaxHeaderFields header fields with 431, and closes the
// connection; other requests go to next: to its ServeFramed when it is a
// Framed, told what Guard found of the request's connection (Arrival).
// The connection is the listener's own, found in the request's context
// (ConnContext); one that does not scan (no ScanFraming), or a request
// that came through no Listener, is passed on as it is.
func Guard(next http.Handler) http.Handler {
	framed, _ := next.(Framed)
	return &guard{next: next, framed: framed}
}

// guard is Guard's handler: a type, not an http.HandlerFunc, so the
// server's call reaches ServeHTTP with no HandlerFunc frame between.
type guard struct {
	next   http.Handler
	framed Framed // next, when it is a Framed; else nil
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var a Arrival
	c, ok := r.Context().Value(connKey{}).(*conn)
	if ok && c.scan {
		a.Memo = &c.memo
		if r.ProtoMajor == 1 {
			a.Spare = &c.spare
		}
		c.rd.mu.Lock()
		h := c.fr.Next()
		c.rd.mu.Unlock()
		// One test on the way of every request; the refusals in a
		// function of their own, out of its code lines (docs/BENCHMARKS.md §9).
		if (h.Ambiguous || h.ManyFields || !h.Scanned) && refuseScanned(w, r, c, h) {
			return
		}
		a.BodyReceived = h.Received
	} else if refuseUnscanned(w, r, c, &a) {
		return
	}
	if g.framed != nil {
		g.framed.ServeFramed(w, r, a)
		return
	}
	g.next.ServeHTTP(w, r)
}

// refuseScanned answers a request on a scanning connection whose head the
// scanner found ambiguous or with too many fields and reports whether it
// did. The scanner counted the head's field lines as it read them; the
// header map is counted only for a head it did not scan (framing lost):
// ranging over it is ~120 ns a request.
func refuseScanned(w http.ResponseWriter, r *http.Request, c *conn, h framing.Head) bool {
	if h.Ambiguous {
		refuseAmbiguous(w)
		return true
	}
	if h.ManyFields || !h.Scanned && tooManyFields(r.Header) {
		c.l.m.headerTooLarge()
		refuseTooManyFields(w, r)
		return true
	}
	return false
}

// refuseUnscanned is Guard for a request on a connection that does not
// scan (c set: its memo and slot go to a) or through no Listener (c nil):
// its header map is counted (HTTP/2, scanning off). It reports whether it
// refused the request.
func refuseUnscanned(w http.ResponseWriter, r *http.Request, c *conn, a *Arrival) bool {
	if c != nil {
		a.Memo = &c.memo
		if r.ProtoMajor == 1 {
			a.Spare = &c.spare
		}
	}
	if !tooManyFields(r.Header) {
		return false
	}
	if c != nil {
		c.l.m.headerTooLarge()
	}
	refuseTooManyFields(w, r)
	return true
}

// refuseAmbiguous answers a request whose head had both Content-Length
// and Transfer-Encoding; the connection ends with it (the scanner lost the
// framing there: the rest cannot be trusted).
func refuseAmbiguous(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	w.Header().Set("X-Request-Id", openai.NewRequestID()) // as every answer has: the client can quote it
	openai.WriteError(w, openai.BadRequest("ambiguous_framing",
		"the request has both Content-Length and Transfer-Encoding headers; send one"))
}

// Framed is a handler that wants to know what Guard found of each
// request's connection (Arrival), in the look-up Guard makes anyway: the
// handler's own would be a context walk each (and a lock for
// BodyReceived), per request.
type Framed interface {
	http.Handler
	// ServeFramed serves r, which arrived as a says.
	ServeFramed(w http.ResponseWriter, r *http.Request, a Arrival)
}

// Arrival is what Guard knows of a request's connection as the handler
// starts.
type Arrival struct {
	// BodyReceived is BodyReceived(r).
	BodyReceived bool
	// Memo is ConnMemo(r.Context()), found without a second walk of the
	// context; nil when the request did not come through a Listener and
	// its ConnContext.
	Memo *atomic.Value
	// Spare is a slot of the connection's where a handler may keep what
	// one request allocated for the next request on the connection to
	// reuse; nil unless the request is HTTP/1.x and came through a
	// Listener. net/http serves an HTTP/1.x connection's requests one
	// after another on the connection's goroutine, and ends one (its
	// answer's head and body written, from the header map the handler
	// filled) before it reads the next, so what the slot holds is free
	// once the handler has returned; HTTP/2's requests run at once.
	Spare *any
}

// BodyReceived reports whether the whole body of r, a request Guard passed
// on, has already been read from its connection: the server holds it in
// its buffer, so reading it (or discarding it after the handler) never
// waits on the client, and a deadline on those reads could not matter.
// False when it cannot tell: r did not come through a scanning Listener
// (ScanFraming) and Guard, the body is still arriving, or the scanner lost
// the framing.
func BodyReceived(r *http.Request) bool {
	c, ok := r.Context().Value(connKey{}).(*conn)
	if !ok || !c.scan {
		return false
	}
	c.rd.mu.Lock()
	defer c.rd.mu.Unlock()
	return c.fr.Received()
}
