package main

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/sluice-gw/sluice/internal/app"
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

// servePprof serves a's PprofHandler (Go's /debug/pprof behind the admin
// listener's gate) on its own listener, never on the
// client-facing one, and returns what stops it. The flag is deprecated,
// not removed, so old scripts keep working: it says so at start, and what
// the gate means for the address.
//
// The server and the listener's cap are the admin listener's
// (app.PprofServer): before, this was a bare http.Server.
func servePprof(a *app.App, ln net.Listener, tokenSet bool, log *slog.Logger) (stop func()) {
	log.Warn("--pprof is deprecated: set admin.pprof: true to serve /debug/pprof on the admin listener; this listener now has the admin listener's protection (admin.token, or this host only without one)",
		"addr", ln.Addr().String(), "token", tokenSet)
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && !tokenSet {
		log.Warn("pprof listener off loopback without admin.token: it answers this host only, other hosts get 403 admin_token_required",
			"addr", ln.Addr().String())
	}
	srv, guarded := a.PprofServer(ln, a.Gateway().PprofHandler())
	go srv.Serve(guarded)
	return func() { srv.Close() }
}
