package jobs

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// apiDrainBound bounds the wait, before a server's stop, for the
// JetStream API requests it has taken to be answered. Creating a stream
// takes milliseconds; the bound is a hang guard for a server that never
// answers, whose stop then goes ahead as before.
const apiDrainBound = 5 * time.Second

// apiDrainPoll is how often awaitAPIRequests looks.
const apiDrainPoll = 5 * time.Millisecond

// awaitAPIRequests waits, at most bound, until srv has no JetStream API
// request in flight (queued or being served). nats-server v2.15.2
// registers a new stream with its account only at the end of its
// creation, and its JetStream shutdown stops only the streams registered
// then: a stream created across the stop kept its file store, whose
// flushStreamStateLoop ran on after the server was gone and wrote the
// stream's state into the data directory every 2 minutes, a directory
// the next owner (a retried open in this process, or the next gateway)
// then held. A start that gave up provisioning the store (openQueue's
// 30 s) stopped the server with its last creation still queued.
// The caller has closed its own connections: a request is then either in
// flight here or never sent.
func awaitAPIRequests(srv *server.Server, bound time.Duration, log *slog.Logger) {
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	poll := time.NewTicker(apiDrainPoll)
	defer poll.Stop()
	for {
		n := apiInflight(srv)
		if n == 0 {
			return
		}
		select {
		case <-deadline.C:
			log.Warn("embedded NATS: stopping with JetStream API requests still in flight", "requests", n, "waited", bound.String())
			return
		case <-poll.C:
		}
	}
}

// apiInflight is how many JetStream API requests srv has taken and not
// yet answered; 0 without JetStream. Through Varz, which takes no
// stream's lock (Jsz does: a stream wedged under its lock would hang it).
func apiInflight(srv *server.Server) uint64 {
	v, err := srv.Varz(nil)
	if err != nil || v == nil || v.JetStream.Stats == nil {
		return 0
	}
	return v.JetStream.Stats.API.Inflight
}
