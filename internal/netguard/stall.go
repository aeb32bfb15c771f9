package netguard

import (
	"net/http"
	"time"
)

// AdminSendTimeout is how long the admin-class listeners (the gateway's
// admin.listen, a `sluice worker`'s --metrics-listen) wait for a client
// to take the next bytes of a /metrics answer, or of a /status/stream
// event, before they cut it: a scraper that stopped reading (a stopped
// laptop, a stuck proxy) does not hold its connection slot, and its
// handler goroutine, forever. 10 s is Prometheus' default scrape_timeout:
// a scrape still unread by then is discarded by its scraper anyway.
const AdminSendTimeout = 10 * time.Second

// StallCut wraps h so that every write of its answer must be taken by the
// client within d (nginx's send_timeout, between two writes, not over the
// whole answer: a large /metrics answer on a slow link that keeps
// reading is not cut). The deadline is moved before each write and each
// flush, and once before h runs, so it also bounds net/http's final
// flush of what h left buffered; net/http lifts it after the request
// (conn.serve, after finishRequest), so a kept-alive connection's next
// request starts without it. For handlers whose answers are short: a
// handler that waits between writes longer than d is not cut by the wait,
// only by a write that stalls.
func StallCut(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &stallWriter{ResponseWriter: w, rc: http.NewResponseController(w), d: d}
		sw.arm()
		h.ServeHTTP(sw, r)
	})
}

type stallWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

// arm: network deadlines are wall-clock.
func (w *stallWriter) arm() { w.rc.SetWriteDeadline(time.Now().Add(w.d)) }

func (w *stallWriter) Write(p []byte) (int, error) {
	w.arm()
	return w.ResponseWriter.Write(p)
}

func (w *stallWriter) Flush() {
	w.arm()
	w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *stallWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
