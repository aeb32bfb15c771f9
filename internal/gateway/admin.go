package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"

	"github.com/sluice-gw/sluice/internal/dashboard"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
)

// AdminHandler serves the privileged surfaces — /status (tenants' queues,
// backend URLs) and /status/stream (the same, live), /metrics, /scaling (the scaling signals as JSON), /spare (the separate workers' gate), /worker/v1/…
// (the separate workers' jobs, run as their tenants; needs admin.worker_token,
// else admin.token: admitToken)
// and, with admin.pprof, Go's /debug/pprof — for the admin listener only;
// the public handler (ServeHTTP) answers 404 for all of them. The
// dashboard page at / and its two assets are served without the token:
// they hold no data, and the page asks for the token to read the stream.
//
// admin.token and admin.pprof are read from the running config on every
// request, so a reload changes them without a restart. With a token set,
// every request must carry "Authorization: Bearer <token>"; the comparison
// takes the same time whatever the guess. Without one, only peers on this
// host's loopback are answered (loopbackPeer); others get 403
// admin_token_required, whatever address admin.listen binds; and only
// requests addressed to an IP or to localhost (rebindableHost): others
// get 403 admin_host_not_allowed. Every answer past the gate is
// Cache-Control: no-store, but the workers' job calls, which the chain
// answers as a client's.
func (g *Gateway) AdminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// The dashboard's page and assets hold no data: served to anyone
		// who reaches the listener, so a browser can load the page and
		// ask for the token (internal/dashboard).
		if dashboard.Serve(w, r) {
			return
		}
		admin := g.rt.Load().Config.Admin
		path := r.URL.Path
		token, name := admitToken(admin.Token, admin.WorkerToken, path, r)
		if !adminAdmitsAs(w, r, token, name) {
			return
		}
		if path == QueuePath || !strings.HasPrefix(path, WorkerPath+"/") {
			// Tenants, backend URLs, traffic, the process' memory: for the
			// operator who asked, never for a cache on the way or the
			// browser's history (Envoy's admin answers no-cache alike).
			w.Header().Set("Cache-Control", "no-store")
		}
		if adminReadOnly(path) && !openai.ReadOnly(w, r) {
			return
		}
		switch {
		case path == "/metrics":
			g.promHTTP.ServeHTTP(w, r)
		case path == "/status":
			g.serveStatus(w, r)
		case path == "/scaling":
			g.serveScaling(w, r)
		case path == "/status/stream":
			g.serveStatusStream(w, r)
		case path == "/spare":
			g.serveSpare(w, r)
		case admin.Pprof && strings.HasPrefix(path, "/debug/pprof/"):
			pprofCut.ServeHTTP(w, r)
		case path == QueuePath:
			g.serveQueueInfo(w, r, token)
		case strings.HasPrefix(path, WorkerPath+"/"):
			g.serveWorkerJob(w, r, token)
		default:
			writeError(w, openai.NotFound("unknown_url", "Unknown admin URL: "+openai.Echo(r.Method+" "+path)))
		}
	})
}

// adminAdmits is the admin listener's gate, also the --pprof listener's
// (PprofHandler): without token only peers on this host's loopback are
// answered (protected mode, as Redis's), wherever the listener binds,
// and only requests addressed to an IP or localhost (rebindableHost);
// with one, every request must carry it. A refused request is answered.
func adminAdmits(w http.ResponseWriter, r *http.Request, token string) bool {
	return adminAdmitsAs(w, r, token, "admin.token")
}

// isWorkerRoute reports the routes only separate workers need: the queue's
// URL (with its NATS password) and running requests as any tenant.
func isWorkerRoute(path string) bool {
	return path == QueuePath || strings.HasPrefix(path, WorkerPath+"/")
}

// admitToken is the credential path takes, and its config key for the
// refusal: with admin.worker_token set, the worker routes take it alone
// (least privilege: the dashboard's admin.token no longer hands out the
// queue's password or acts as a tenant), /spare either (a worker polls
// it, an operator may look), every other route admin.token alone.
func admitToken(adminToken, workerToken, path string, r *http.Request) (token, name string) {
	if workerToken == "" {
		return adminToken, "admin.token"
	}
	switch {
	case isWorkerRoute(path):
		return workerToken, "admin.worker_token"
	case path == "/spare" && tokenMatches(bearer(credential(r.Header["Authorization"])), workerToken):
		return workerToken, "admin.worker_token"
	}
	return adminToken, "admin.token"
}

// adminAdmitsAs is adminAdmits for a route whose credential is the config
// key name (admin.token or admin.worker_token), which a refusal names.
func adminAdmitsAs(w http.ResponseWriter, r *http.Request, token, name string) bool {
	e := adminRefusal(r, token)
	if e != nil && e.Code == "invalid_admin_token" && name != "admin.token" {
		e.Code, e.Message = "invalid_worker_token", "this admin route needs 'Authorization: Bearer <"+name+">' (sluice worker --token)"
	}
	if e == nil {
		return true
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice-admin"`)
	}
	writeError(w, e)
	return false
}

// adminRefusal is adminAdmits' verdict on r under token: nil when r may be
// answered. /status/stream asks again before each event, so a reload
// that changes admin.token ends the streams the old token opened.
func adminRefusal(r *http.Request, token string) *openai.Error {
	if crossSite(r) {
		return &openai.Error{Status: http.StatusForbidden, Type: openai.TypeInvalidRequest, Code: "admin_cross_site",
			Message: "the admin listener does not answer requests another site's page makes (Sec-Fetch-Site: " + openai.Echo(r.Header.Get("Sec-Fetch-Site")) + "): open its own page, or use a client that is not a browser"}
	}
	if token == "" && !loopbackPeer(r.RemoteAddr) {
		return &openai.Error{Status: http.StatusForbidden, Type: openai.TypeInvalidRequest,
			Code: "admin_token_required", Message: "the admin listener answers other hosts only with admin.token set: set it (and send 'Authorization: Bearer <admin.token>'), or reach it from this host"}
	}
	if token == "" && rebindableHost(r.Host) {
		return &openai.Error{Status: http.StatusForbidden, Type: openai.TypeInvalidRequest,
			Code: "admin_host_not_allowed", Message: "the admin listener without admin.token answers requests addressed to an IP address or localhost only, not to " +
				openai.Echo(r.Host) + " (a name that points here may be a web page's DNS rebinding): use the address, or set admin.token"}
	}
	if token != "" && !tokenMatches(bearer(credential(r.Header["Authorization"])), token) {
		return &openai.Error{Status: http.StatusUnauthorized, Type: openai.TypeInvalidRequest,
			Code: "invalid_admin_token", Message: "the admin listener needs 'Authorization: Bearer <admin.token>'"}
	}
	return nil
}

// PprofHandler serves Go's /debug/pprof for the deprecated --pprof
// listener, behind the admin listener's gate (adminAdmits, admin.token
// read per request): before, that listener answered anyone who reached
// it, on any address. Other paths are 404.
func (g *Gateway) PprofHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if !adminAdmits(w, r, g.rt.Load().Config.Admin.Token) {
			return
		}
		if !strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			writeError(w, openai.NotFound("unknown_url", "Unknown URL: "+openai.Echo(r.Method+" "+r.URL.Path)))
			return
		}
		servePprof(w, r)
	})
}

// adminReadOnly reports whether path is an admin route that answers GET
// and HEAD only (openai.ReadOnly): a POST or DELETE there is a mistake to
// point out, not a read. /status/stream and the worker routes check their
// own methods, pprof too (servePprof: its symbol lookup takes a POST); the
// dashboard's assets are served before the token is checked, with the
// same check.
func adminReadOnly(path string) bool {
	switch path {
	case "/metrics", "/status", "/scaling", "/spare":
		return true
	}
	return false
}

// loopbackPeer reports whether addr, a request's RemoteAddr, is on this
// host's loopback: the only peer an admin listener without admin.token
// answers. /status names tenants and backend URLs, /metrics the traffic,
// pprof the process' memory; binding admin.listen to a routable address
// must not publish them to whoever reaches it.
func loopbackPeer(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// rebindableHost reports whether host, a request's Host, is a DNS name
// that could point here without belonging to this host: a web page the
// operator visits can make its own name resolve to 127.0.0.1 (DNS
// rebinding) and then read whatever that origin answers, the loopback
// gate's peer check passing, since the browser is on this host. An IP
// address (no name to rebind), "localhost" and names under .localhost
// (RFC 6761: browsers resolve them to loopback themselves) are not; nor
// is an empty Host (HTTP/1.0: no browser sends one). Geth's
// --http.vhosts, Jupyter and Syncthing refuse foreign Hosts the same way.
// The token, where set, is what protects: a rebinding page cannot know it.
func rebindableHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if _, err := netip.ParseAddr(host); host == "" || err == nil {
		return false
	}
	host = strings.ToLower(host)
	return host != "localhost" && !strings.HasSuffix(host, ".localhost")
}

// crossSite reports whether a browser says another site's page made r
// (Fetch Metadata, sent by every current browser, to loopback too): an
// <img> or a form on a page the operator visits reaches a token-less
// loopback listener as a loopback peer with an IP Host, and could start
// a pprof profile or trace there, unread but run. The dashboard's own
// requests are same-origin; an address typed or bookmarked is "none";
// Prometheus, curl and workers send no such header. A link followed to
// a top-level page (a Grafana panel linking /metrics) is let through: the
// operator sees it open, and no page can read it.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return r.Header.Get("Sec-Fetch-Mode") != "navigate" || r.Header.Get("Sec-Fetch-Dest") != "document"
	}
	return false
}

// tokenMatches compares digests, so neither the content nor the length of
// the configured token leaks through timing.
func tokenMatches(got, want string) bool {
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// pprofCut is servePprof for the admin listener, whose server has no
// WriteTimeout (a profile answers after its ?seconds=): a client that
// stops taking a goroutine dump or a trace is cut after
// netguard.AdminSendTimeout rather than holding its connection, one of
// admin.max_connections, and its handler goroutine (for a trace, the
// runtime's tracer too: trace.Stop waits for its writer) until the
// process stops, as the --pprof listener's server cuts it
// (app.PprofServer).
var pprofCut = netguard.StallCut(http.HandlerFunc(servePprof), netguard.AdminSendTimeout)

// servePprof is net/http/pprof's handlers without its init-registered
// DefaultServeMux, with their methods: GET and HEAD, and POST for the
// symbol lookup (pprof's own client posts there). Go's handlers answer
// any method; a DELETE of a profile is a mistake to point out, as on
// every other admin route.
func servePprof(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/debug/pprof/")
	if r.Method != http.MethodGet && r.Method != http.MethodHead && (r.Method != http.MethodPost || name != "symbol") {
		allowed := []string{http.MethodGet}
		if name == "symbol" {
			allowed = append(allowed, http.MethodPost)
		}
		w.Header().Set("Allow", strings.Join(append([]string{http.MethodGet, http.MethodHead}, allowed[1:]...), ", "))
		writeError(w, openai.MethodNotAllowed(r, allowed...))
		return
	}
	switch name {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r)
	}
}
