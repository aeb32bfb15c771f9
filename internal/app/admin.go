package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/netguard"
)

// The admin listener (admin.listen): bound before the App is built when
// sluice serve starts, so a taken port fails the start before anything
// else runs, then served beside the public listener until Run returns.

// AdminHandler is the admin listener's handler (tests drive it directly).
func (a *App) AdminHandler() http.Handler { return a.gw.AdminHandler() }

// ListenAdmin opens the admin listener before Run, so a caller learns its
// address (tests and demos use "127.0.0.1:0"). addr "" means admin.listen
// from the config; the result is nil when that is "off". Run serves it and
// closes it on shutdown. Calling it again returns the open listener's address.
func (a *App) ListenAdmin(addr string) (net.Addr, error) {
	a.adminMu.Lock()
	defer a.adminMu.Unlock()
	if a.adminLn != nil {
		return a.adminLn.Addr(), nil
	}
	if addr == "" {
		addr = a.gw.Runtime().Config.Admin.Listen
	}
	ln, err := ListenAdminAddr(addr)
	if ln == nil {
		return nil, err
	}
	a.adminLn = ln
	return ln.Addr(), nil
}

// ListenAdminAddr binds the admin listener at addr (admin.listen), nil
// when it is "off". sluice serve binds it before New, with the public
// listener, so that a taken port fails the start before anything else
// starts; AdoptAdmin hands it to the App.
func ListenAdminAddr(addr string) (net.Listener, error) {
	if addr == "off" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		// net's error names the address; this names where it was set.
		return nil, fmt.Errorf("admin listen (admin.listen in the config, or --admin-listen): %w", err)
	}
	return ln, nil
}

// AdoptAdmin makes ln (from ListenAdminAddr, nil for "off") the admin
// listener Run serves and closes, as ListenAdmin would have opened it.
// An App whose admin listener is open already closes ln.
func (a *App) AdoptAdmin(ln net.Listener) {
	if ln == nil {
		return
	}
	a.adminMu.Lock()
	defer a.adminMu.Unlock()
	if a.adminLn != nil {
		ln.Close()
		return
	}
	a.adminLn = ln
}

// serveAdmin serves the admin listener, if any, until the returned func
// closes it, its requests' contexts descending from base. It serves
// through the whole drain (metrics, status) and is closed, not drained,
// when Run returns: its requests are short (a pprof profile excepted),
// and the separate workers' jobs, which are not, had the drain and its
// cut first (drainWorkers).
func (a *App) serveAdmin(base context.Context) (stop func()) {
	a.adminMu.Lock()
	ln := a.adminLn
	a.adminMu.Unlock()
	if ln == nil {
		return func() {}
	}
	// Capped as the public listener is (netguard); a reload changes the
	// cap (applyAdminLimits). Its refusals are counted with
	// listener="admin"; the other connection metrics are the public
	// listener's alone. The config is read under adminMu, which a reload
	// takes after installing its own: either this reads the new cap, or
	// the reload finds adminCaps set.
	a.adminMu.Lock()
	cfg := a.gw.Runtime().Config
	guarded := netguard.NewListener(ln, adminConnLimits(cfg.Admin, cfg.Server.Linger), a.connMetrics.AdminView())
	guarded.LogRefusals(a.adminRefusalLog(cfg.Log.Access), a.gw.RefusalLineAllowed)
	a.adminCaps = guarded
	a.adminMu.Unlock()
	srv := NewAdminServer(a.gw.AdminHandler(), guarded, a.log)
	srv.BaseContext = func(net.Listener) context.Context { return base }
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(guarded) }()
	a.log.Info("sluice admin listening", "addr", ln.Addr().String(), "token", a.gw.Runtime().Config.Admin.Token != "")
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && a.gw.Runtime().Config.Admin.Token == "" {
		a.log.Warn("admin listener off loopback without admin.token: it answers this host only, other hosts get 403 admin_token_required; set admin.token to scrape it from elsewhere",
			"addr", ln.Addr().String())
	}
	return func() {
		a.gw.CloseStreams() // ends /status/stream watchers before their connections
		srv.Close()
		<-done
		a.adminMu.Lock()
		a.adminCaps = nil
		a.adminMu.Unlock()
	}
}

// NewAdminServer is the HTTP server of an admin-class listener: the
// gateway's admin.listen and a `sluice worker`'s --metrics-listen, one
// definition for both. A request's head must arrive within 10 s and fit
// in 64 KiB (the public listener's defaults, server.read_header_timeout
// and server.max_header_bytes), a kept-alive connection is closed after
// 120 s idle (a scraper's interval is usually 15-60 s). There is no
// ReadTimeout (admin requests have no bodies worth bounding apart: the
// worker routes' are bounded by the gateway's body timeouts) and no
// WriteTimeout: /status/stream, a pprof profile and the worker routes
// answer for as long as they last; /metrics, /status/stream and
// /debug/pprof cut a client that stops taking bytes themselves
// (netguard.AdminSendTimeout).
func NewAdminServer(h http.Handler, guarded *netguard.Listener, log *slog.Logger) *http.Server {
	return &http.Server{
		ConnContext:       guarded.ConnContext,
		ConnState:         guarded.ConnState,
		Handler:           h,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		IdleTimeout:       adminIdleTimeout,
		MaxHeaderBytes:    adminMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

const (
	adminReadHeaderTimeout = 10 * time.Second
	adminIdleTimeout       = 120 * time.Second
	adminMaxHeaderBytes    = 64 << 10
)

// adminConnLimits is the admin listener's cap: past admin.max_connections
// a connection gets the refusal tier's 503, a tier as small as the cap,
// and is closed at accept past that. Its lingering closes are bounded by
// server.linger (sl), as the public listener's are, the tier's cut to the
// tier's ceilings (netguard.Linger.ForRefusal): one setting for how long
// the gateway drains a client it has answered.
func adminConnLimits(cfg config.Admin, sl config.ServerLinger) netguard.ConnLimits {
	lim := lingerOf(sl)
	rf := netguard.DefaultRefusal()
	rf.Max, rf.Linger = cfg.MaxConnections, lim.ForRefusal()
	return netguard.ConnLimits{Total: cfg.MaxConnections, Linger: lim, Refusal: rf, Admin: true}
}

// adminRefusalLog is where the admin listener logs the answers it makes
// itself (its cap's 503, a malformed or late head), as the public
// listener's are (refusalLog: with log.access, within the same budget of
// lines), marked listener=admin: before, its refusals were counted
// (sluice_connections_refused_total{listener="admin"}) but never logged,
// so a 503's request id an operator quoted was found nowhere.
func (a *App) adminRefusalLog(access bool) *slog.Logger {
	if l := a.refusalLog(access); l != nil {
		return l.With("listener", netguard.ListenerAdmin)
	}
	return nil
}

// applyAdminLimits applies a reload's admin.max_connections (and server.linger) to the admin
// listener while it serves, as the public listener's caps are
// (applyServerLimits): connections already open above a lowered cap are
// not cut; new ones are refused until the open ones are under it.
func (a *App) applyAdminLimits(cfg config.Admin, sl config.ServerLinger, access bool) {
	a.adminMu.Lock()
	defer a.adminMu.Unlock()
	if a.adminCaps != nil {
		a.adminCaps.SetLimits(adminConnLimits(cfg, sl))
		a.adminCaps.LogRefusals(a.adminRefusalLog(access), a.gw.RefusalLineAllowed)
	}
}
