package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// listenPprof binds the deprecated --pprof listener, before anything
// else starts, as the public and admin listeners are: a port already
// taken fails the start at once, naming the flag.
func listenPprof(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		// net's error names the address; this names where it was set.
		return nil, fmt.Errorf("pprof listen (--pprof): %w", err)
	}
	return ln, nil
}

// servePprof serves h (the gateway's PprofHandler: Go's /debug/pprof behind
// the admin listener's gate) on its own listener, never on the
// client-facing one, and returns what stops it. The flag is deprecated,
// not removed, so old scripts keep working: it says so at start, and what
// the gate means for the address.
func servePprof(ln net.Listener, h http.Handler, tokenSet bool, log *slog.Logger) (stop func()) {
	log.Warn("--pprof is deprecated: set admin.pprof: true to serve /debug/pprof on the admin listener; this listener now has the admin listener's protection (admin.token, or this host only without one)",
		"addr", ln.Addr().String(), "token", tokenSet)
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && !tokenSet {
		log.Warn("pprof listener off loopback without admin.token: it answers this host only, other hosts get 403 admin_token_required",
			"addr", ln.Addr().String())
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go srv.Serve(ln)
	return func() { srv.Close() }
}
