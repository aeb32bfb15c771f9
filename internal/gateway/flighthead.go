package gateway

import (
	"net/http"
	"strings"

	"github.com/sluice-gw/sluice/internal/proxy"
)

// copyFlightHead copies a flight's response head, from, to the head h of
// one of its clients. Every client gets what describes the answer: its
// type and length, the backend's Cache-Control and other end-to-end
// headers, X-Sluice-Model and X-Sluice-Backend (who answered it). A header
// the client's own request already set stays its own.
//
// The backend's x-ratelimit-* reach the leader, whose call they answer,
// only when the gateway set none of its own (proxy.OwnRateLimits): a
// client's limits are the gateway's. A follower made no upstream call, so
// it never gets them, nor anything else that is the leader's call's own
// (perCall): its cookies, its ids, its timing.
func copyFlightHead(h, from http.Header, leader bool) {
	own := proxy.OwnRateLimits(h)
	for k, v := range from {
		switch {
		case proxy.IsRateLimitHeader(k) && (own || !leader):
		case leader:
			h[k] = v
		case perCall(k) || h[k] != nil:
		default:
			h[k] = v
		}
	}
}

// perCall reports whether a backend's response header k (canonical) is
// the call's own rather than the answer's: a cookie it set (a session at a
// hosted API, or its CDN's), an id of that request (X-Request-Id is the
// gateway's own, set per client; a hosted API or its CDN may add theirs:
// Cf-Ray, X-Amzn-Requestid, Apim-Request-Id, ...), its timing
// (Openai-Processing-Ms, Server-Timing). A coalesced follower did not make
// that call; as a cache HIT, it gets none of them.
func perCall(k string) bool {
	switch k {
	case "Set-Cookie", "Set-Cookie2", "Cf-Ray", "Openai-Processing-Ms", "Server-Timing", "Traceparent", "Tracestate":
		return true
	}
	return strings.HasSuffix(k, "-Id") && strings.Contains(k, "Request") || strings.HasSuffix(k, "Requestid")
}
