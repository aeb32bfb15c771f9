package gateway

import (
	"net/http"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// QueuePath is where a `sluice worker` started without --nats asks the
// admin listener which NATS holds the job queue (GET, admin.token).
const QueuePath = WorkerPath + "/v1/queue"

// QueueInfo says where the job queue lives: Mode "embedded" (the NATS
// server in this process, on a port picked at start unless queue.listen
// names one), "external" (queue.url) or "off"; URL is the NATS client URL
// (list) workers connect to.
type QueueInfo struct {
	Mode string `json:"mode"`
	URL  string `json:"nats_url,omitempty"`
}

// redacted is the info with the URLs' passwords hidden, for /status and
// logs.
func (q QueueInfo) redacted() QueueInfo {
	q.URL = RedactURLs(q.URL)
	return q
}

// RedactURLs hides the passwords of a comma-separated URL list (a NATS
// server list). It is telemetry's text rule, not url.Parse: a URL that does
// not parse was shown whole, password included ("nats://u:50%off@h:4222",
// an invalid escape, on /status and in the start and outage log lines).
func RedactURLs(list string) string { return telemetry.RedactURLs(list) }

// serveQueueInfo answers a separate worker's question "which NATS?" with
// the URL as configured, credentials included: it is behind admin.token,
// which must be set (as for running jobs), since the answer can carry the
// NATS password.
func (g *Gateway) serveQueueInfo(w http.ResponseWriter, r *http.Request, token string) {
	if token == "" {
		writeError(w, &openai.Error{Status: http.StatusForbidden, Type: openai.TypeInvalidRequest, Code: "admin_token_required",
			Message: "separate workers need admin.worker_token (or admin.token) set on the gateway and sent by the worker (--token)"})
		return
	}
	if !openai.ReadOnly(w, r) { // HEAD as GET, as on every admin read
		return
	}
	if g.queueInfo.Mode == "" || g.queueInfo.Mode == "off" {
		writeError(w, openai.NotFound("queue_disabled", "this gateway has no job queue (queue.enabled: false)"))
		return
	}
	writeJSON(w, http.StatusOK, g.queueInfo)
}
