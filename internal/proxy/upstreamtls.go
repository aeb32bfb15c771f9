package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Router sends each request to the transport of its backend's TLS
// profile: plain http:// to the lean client (or net/http), https:// to
// the transport of the profile its host:port was given, else of the
// default profile (upstream_tls). Backends sharing a host:port share one
// connection pool, so they share one profile (config validation). A
// Router is built with each runtime and never changes.
type Router struct {
	plain http.RoundTripper
	// leanKey is plain's key in the cache's lean, when plain is a lean
	// client (retire).
	leanKey leanKey
	// netHTTP is net/http's transport for http://, which the health
	// checks and scrapes (Current) keep taking as before, so the lean
	// client's pool and its metrics are the requests' alone.
	netHTTP http.RoundTripper
	secure  http.RoundTripper
	byHost  map[string]http.RoundTripper
	// keys are the TLS profiles' transports it uses (SetCurrent retires
	// those the next router does not).
	keys []transportKey
	// certAsked is the Transport's: the https hosts that asked for a
	// client certificate the gateway has none of (clientcert.go).
	certAsked *sync.Map
	// sendIdle is timeouts.stream_idle, the send bound of the requests
	// net/http carries (sendbound.go): https://, and http:// unless
	// leanPlain (the lean client bounds its own writes). 0: none.
	sendIdle  time.Duration
	leanPlain bool
	// afterFunc is the send bound's timer (time.AfterFunc; tests fire
	// their own).
	afterFunc func(time.Duration, func()) Timer
}

// Router builds the round tripper a runtime's requests take:
// Upstream(connectTimeout, sendIdle, lean) for http://, def's transport for https
// (nil: Go's defaults, the system roots), and byHost's profiles for the
// https hosts (host:port as in the backend's URL) that have their own.
func (t *Transport) Router(connectTimeout, sendIdle time.Duration, lean bool, def *TLSProfile, byHost map[string]*TLSProfile) *Router {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := &Router{plain: t.upstreamLocked(connectTimeout, sendIdle, lean), netHTTP: t.forLocked(connectTimeout, nil),
		secure: t.forLocked(connectTimeout, def),
		byHost: make(map[string]http.RoundTripper, len(byHost)), certAsked: &t.certAsked,
		leanKey:  leanKey{connect: connectTimeout, sendIdle: sendIdle},
		sendIdle: sendIdle, leanPlain: lean, afterFunc: realAfterFunc}
	r.keys = append(r.keys, keyOf(connectTimeout, def))
	for host, p := range byHost {
		r.byHost[strings.ToLower(host)] = t.forLocked(connectTimeout, p)
		r.keys = append(r.keys, keyOf(connectTimeout, p))
	}
	return r
}

// RoundTrip implements http.RoundTripper. A request net/http carries
// (https://, or http:// without the lean client) with a body over
// sendBoundFrom goes under the send bound (sendbound.go), as the lean
// client's do under its own.
func (r *Router) RoundTrip(req *http.Request) (*http.Response, error) {
	if (req.URL.Scheme == "https" || !r.leanPlain) && watchSend(req, r.sendIdle) {
		return roundTripBounded(r.roundTripPlain, req, r.sendIdle, r.afterFunc)
	}
	return r.roundTrip(req, r.plain)
}

func (r *Router) roundTripPlain(req *http.Request) (*http.Response, error) {
	return r.roundTrip(req, r.plain)
}

// realAfterFunc is time.AfterFunc as a Timer.
func realAfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

func (r *Router) roundTrip(req *http.Request, plain http.RoundTripper) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		return plain.RoundTrip(req)
	}
	if tr := r.byHost[strings.ToLower(req.URL.Host)]; tr != nil {
		return roundTripTLS(tr, req, r.certAsked) // clientcert.go
	}
	return roundTripTLS(r.secure, req, r.certAsked)
}

// SetCurrent makes r the router Current hands requests to: the serving
// runtime's, set when it is committed. The TLS profiles' transports the
// router it replaces used and r does not are retired (retire), and so is
// its lean client when r takes another (timeouts.stream_idle changed); it
// reports whether any were, for the caller to CloseRetired once the
// requests still running on them had their time.
func (t *Transport) SetCurrent(r *Router) bool {
	old := t.current.Swap(r)
	return old != nil && old != r && t.retire(old, r)
}

// Current is a round tripper for the health checks and load scrapes,
// which outlive runtimes: each request takes the router of the runtime
// serving at the time (SetCurrent), so probes use the same TLS as
// requests; before any, fallbackConnect's transport with Go's defaults.
func (t *Transport) Current(fallbackConnect time.Duration) http.RoundTripper {
	return currentRouter{t: t, fallback: fallbackConnect}
}

type currentRouter struct {
	t        *Transport
	fallback time.Duration
}

func (c currentRouter) RoundTrip(req *http.Request) (*http.Response, error) {
	if r := c.t.current.Load(); r != nil {
		return r.roundTrip(req, r.netHTTP)
	}
	return c.t.For(c.fallback).RoundTrip(req)
}

// tlsFailure reports a TLS failure with the backend: its certificate not
// verified (unknown authority, name mismatch, expired), an alert it sent
// (our client certificate refused: in TLS 1.3 that alert comes on the
// first read, after the request was written, but the backend refused the
// connection, not the request; or, once the backend has closed, a write
// error in its place: certAskedError), or an answer that is not TLS. No
// connection to the backend was made, so it is a connection failure:
// safe to retry elsewhere, 502 upstream_unreachable once out of tries
// (ErrTLS).
func tlsFailure(err error) bool {
	var verify *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	var asked *certAskedError
	if errors.As(err, &verify) || errors.As(err, &record) || errors.As(err, &asked) {
		return true
	}
	// The alert is a net.OpError "remote error", under the dial's own
	// net.OpError when it ends the handshake: look at every one.
	for e := err; e != nil; e = errors.Unwrap(e) {
		if op, ok := e.(*net.OpError); ok && op.Op == "remote error" {
			return true
		}
	}
	return false
}
