// Package dashboard is the admin listener's live status page: one HTML
// page, its script and its style, embedded in the binary (nothing from a
// CDN, so it works on an air-gapped network), reading /status/stream.
//
// The page and its assets hold no data and are served without the admin
// token; the data (/status, /status/stream) needs it. A browser cannot put
// a header on an EventSource, so the script reads the event stream with
// fetch() and sends "Authorization: Bearer <token>", which it asks for
// when the gateway answers 401 and keeps in the page's memory only: never
// in a URL (which ends up in logs and history), a cookie or storage.
package dashboard

import (
	"embed"
	"net/http"

	"github.com/sluice-gw/sluice/internal/openai"
)

//go:embed assets
var assets embed.FS

// asset maps a served path to its embedded file and type.
func asset(path string) (name, contentType string, ok bool) {
	switch path {
	case "/":
		return "assets/index.html", "text/html; charset=utf-8", true
	case "/dashboard.js":
		return "assets/dashboard.js", "text/javascript; charset=utf-8", true
	case "/dashboard.css":
		return "assets/dashboard.css", "text/css; charset=utf-8", true
	case "/favicon.svg":
		return "assets/favicon.svg", "image/svg+xml", true
	}
	return "", "", false
}

// CSP allows the page only its own script, style and connections: no
// inline script or style (an injected tenant name cannot run), no frames
// (clickjacking), no forms posting elsewhere.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'none'; object-src 'none'"

// Serve answers GET or HEAD for the page or one of its assets; false (and
// nothing written) for any other path.
func Serve(w http.ResponseWriter, r *http.Request) bool {
	name, contentType, ok := asset(r.URL.Path)
	if !ok {
		return false
	}
	h := w.Header()
	SecurityHeaders(h)
	if !openai.ReadOnly(w, r) {
		return true
	}
	body, err := assets.ReadFile(name)
	if err != nil { // cannot happen: the files are embedded at build time
		http.Error(w, "dashboard asset missing", http.StatusInternalServerError)
		return true
	}
	h.Set("Content-Type", contentType)
	// Served from the binary: a new build may change them, and they are
	// small; revalidating every load keeps page and script in step.
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
	return true
}

// SecurityHeaders sets the page's headers: the CSP, no MIME sniffing, no
// framing, no referrer.
func SecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}
