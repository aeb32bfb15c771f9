package app

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/tlsterm"
)

// newServer is the public listener's HTTP server, bounded by the server:
// section. There is no ReadTimeout or WriteTimeout: bodies have their own
// gap and total timeouts (netguard.TimedBody) and answers stream for as
// long as the backend generates.
func newServer(h http.Handler, ln *netguard.Listener, sc config.Server, log *slog.Logger) *http.Server {
	return &http.Server{
		// Guard finds the listener's connection in the request's context
		// (ConnContext: one value per connection) and hands the gateway
		// what it knows of it (netguard.Framed).
		Handler:           netguard.Guard(h),
		ConnContext:       ln.ConnContext,
		ConnState:         netguard.ConnState,
		ReadHeaderTimeout: sc.ReadHeaderTimeout.D(),
		IdleTimeout:       sc.IdleTimeout.D(),
		// net/http allows 4 KiB beyond this before answering 431.
		MaxHeaderBytes: int(sc.MaxHeaderBytes),
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

func connLimits(sc config.Server) netguard.ConnLimits {
	lim := lingerOf(sc.Linger)
	rf := netguard.DefaultRefusal()
	rf.Max, rf.HeadTimeout, rf.HeadBytes = sc.RefusalConnections, sc.RefusalHeadTimeout.D(), int(sc.RefusalHeadBytes)
	rf.Linger = lim.ForRefusal()
	return netguard.ConnLimits{Total: sc.MaxConnections, PerIP: sc.MaxConnectionsPerIP, Linger: lim, Refusal: rf}
}

// lingerOf is server.linger as the listeners' lingering close: the
// public listener's and the admin listener's, and, cut to its ceilings
// (netguard.Linger.ForRefusal), either's refusal tier's.
func lingerOf(c config.ServerLinger) netguard.Linger {
	return netguard.Linger{Time: c.TotalTimeout.D(), Timeout: c.ReadTimeout.D(), Bytes: int64(c.MaxBytes)}
}

// guard wraps the public listener in the connection caps and applies the
// process memory budget and the GC's heap floor (gcfloor.go), for as long
// as Run serves (unguard undoes it). access is log.access: the listener's
// own answers are logged with the requests' (refusalLog).
func (a *App) guard(ln net.Listener, sc config.Server, access bool) *netguard.Listener {
	a.connMu.Lock()
	defer a.connMu.Unlock()
	a.baseMemLimit = debug.SetMemoryLimit(-1)
	_, gogcSet := os.LookupEnv("GOGC")
	a.gc = startGCFloor(gcFloorFor(int64(sc.MemoryLimit)), gogcSet)
	a.conns = netguard.NewListener(ln, connLimits(sc), a.connMetrics)
	// TLS, when on, sits beneath the listener's connection, which counts
	// TCP connections and scans the decrypted bytes' framing.
	if a.tls != nil {
		a.conns.WrapTransport(a.tls.Wrap)
	}
	// The guard refuses requests whose length is ambiguous (both
	// Content-Length and Transfer-Encoding), which net/http accepts: the
	// connections the caps admit scan what they read (internal/framing).
	a.conns.ScanFraming()
	a.applyLocked(sc, access)
	return a.conns
}

func (a *App) unguard() {
	a.connMu.Lock()
	defer a.connMu.Unlock()
	a.conns = nil
	debug.SetMemoryLimit(a.baseMemLimit)
	a.gc.stop()
	a.gc = nil
}

// applyServerLimits applies, on reload, what can change while serving: the
// connection caps, the lingering close's bounds (for closes that start
// after it), the process memory budget and whether the listener's
// own answers are logged (log.access). The body bounds are read per
// request from the runtime; the http.Server's settings need a restart.
func (a *App) applyServerLimits(sc config.Server, access bool) {
	a.connMu.Lock()
	defer a.connMu.Unlock()
	if a.conns != nil {
		a.applyLocked(sc, access)
	}
}

func (a *App) applyLocked(sc config.Server, access bool) {
	a.conns.SetLimits(connLimits(sc))
	a.conns.LogRefusals(a.refusalLog(access), a.gw.RefusalLineAllowed)
	a.gc.setFloor(gcFloorFor(int64(sc.MemoryLimit)))
	if sc.MemoryLimit > 0 {
		debug.SetMemoryLimit(int64(sc.MemoryLimit))
	} else {
		debug.SetMemoryLimit(a.baseMemLimit)
	}
}

// refusalLog is where the listener logs the answers it makes itself (a
// malformed head, a late head, a connection over a cap): the gateway's
// log when the access log is on (log.access), so a request id a client
// quotes from such an answer is found as a request's is; nil when off.
// Its lines share the budget of the gateway's own refusals' access lines
// (log.access_refused_per_second): a flood of connections over the cap
// writes that many a second, the rest counted in
// sluice_log_access_lines_suppressed_total.
func (a *App) refusalLog(access bool) *slog.Logger {
	if !access {
		return nil
	}
	return a.log
}

// loadCert reads tls's certificate pair, or nothing when tls is off.
func loadCert(c config.TLS) (*tls.Certificate, error) {
	if !c.Enabled() {
		return nil, nil
	}
	return tlsterm.LoadPair(c.CertFile, c.KeyFile)
}

// newTerminator is the client listener's TLS, nil when tls is off.
func newTerminator(c config.TLS) (*tlsterm.Terminator, error) {
	cert, err := loadCert(c)
	if err != nil || cert == nil {
		return nil, err
	}
	return tlsterm.New(cert, c.MinTLSVersion()), nil
}
