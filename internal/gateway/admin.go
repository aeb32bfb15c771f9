package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/sluice-gw/sluice/internal/openai"
)

// AdminHandler serves the privileged surfaces — /status (tenants' queues,
// backend URLs), /metrics, /scaling (the scaling signals as JSON), /spare (the separate workers' gate), /worker/v1/…
// (the separate workers' jobs, run as their tenants; needs admin.token)
// and, with admin.pprof, Go's /debug/pprof — for the admin listener only;
// the public handler (ServeHTTP) answers 404 for all of them.
//
// admin.token and admin.pprof are read from the running config on every
// request, so a reload changes them without a restart. With a token set,
// every request must carry "Authorization: Bearer <token>"; the comparison
// takes the same time whatever the guess.
func (g *Gateway) AdminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		admin := g.rt.Load().Config.Admin
		if admin.Token != "" && !tokenMatches(bearer(r.Header.Get("Authorization")), admin.Token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice-admin"`)
			writeError(w, &openai.Error{Status: http.StatusUnauthorized, Type: openai.TypeInvalidRequest,
				Code: "invalid_admin_token", Message: "the admin listener needs 'Authorization: Bearer <admin.token>'"})
			return
		}
		switch path := r.URL.Path; {
		case path == "/metrics":
			g.promHTTP.ServeHTTP(w, r)
		case path == "/status":
			g.serveStatus(w, r)
		case path == "/scaling":
			g.serveScaling(w, r)
		case path == "/spare":
			g.serveSpare(w, r)
		case admin.Pprof && strings.HasPrefix(path, "/debug/pprof/"):
			servePprof(w, r)
		case strings.HasPrefix(path, WorkerPath+"/"):
			g.serveWorkerJob(w, r, admin.Token)
		default:
			writeError(w, openai.NotFound("unknown_url", "Unknown admin URL: "+r.Method+" "+path))
		}
	})
}

// tokenMatches compares digests, so neither the content nor the length of
// the configured token leaks through timing.
func tokenMatches(got, want string) bool {
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// servePprof is net/http/pprof's handlers without its init-registered
// DefaultServeMux.
func servePprof(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
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
