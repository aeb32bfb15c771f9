package app

import (
	"net"
	"net/http"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// PprofServer is the server of the deprecated --pprof listener ln, with
// the admin listener's connection protection: before, it was a bare
// http.Server (a 10 s head timeout and nothing else: no connection cap,
// no idle timeout, 1 MiB heads, and a client that stopped reading a
// profile held its connection and goroutine until the process stopped).
//
// The returned listener is ln capped at admin.max_connections as read at
// start (a reload does not change it, unlike the admin listener's), past
// it the refusal tier's 503 and then a close at accept, refusals counted
// in sluice_connections_refused_total{listener="pprof"}; the server is
// NewAdminServer's (10 s and 64 KiB heads, 120 s idle), and h answers
// with every write taken by the client within netguard.AdminSendTimeout.
// No ReadTimeout or WriteTimeout: a CPU profile or trace legitimately
// answers after its ?seconds= (30 s by default), and pprof refuses one
// longer than a WriteTimeout; a ReadTimeout would cancel the request's
// context mid-profile (net/http's background read then fails).
func (a *App) PprofServer(ln net.Listener, h http.Handler) (*http.Server, net.Listener) {
	cfg := a.gw.Runtime().Config
	guarded := netguard.NewListener(ln, adminConnLimits(cfg.Admin, cfg.Server.Linger), a.connMetrics.PprofView())
	if l := a.refusalLog(cfg.Log.Access); l != nil {
		guarded.LogRefusals(l.With("listener", netguard.ListenerPprof), a.gw.RefusalLineAllowed)
	}
	return NewAdminServer(netguard.StallCut(h, netguard.AdminSendTimeout), guarded, a.log), guarded
}
