package gateway

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// copyFlightHead copies a flight's response head, from, to the head h of
// one of its clients.
//
// The leader made the upstream call: it gets the head as relayed, except
// the backend's x-ratelimit-* when the gateway set its own
// (proxy.OwnRateLimits): a client's limits are the gateway's.
//
// A follower made no upstream call, so it gets only what describes the
// answer (answerHeader), as a cache HIT does (replay: the entry keeps
// nothing else), and a header its own request already set stays its own.
// cc, when not "", is the follower's own Cache-Control (its cache plan:
// two keys of one tenant share a flight, their rules may give them
// different TTLs); it replaces the flight's when it says a shorter
// max-age, unless the flight's answer is not to be stored (no-store: an
// error, a fallback's answer) (clientCacheControl).
func copyFlightHead(h, from http.Header, leader bool, cc string) {
	if leader {
		own := proxy.OwnRateLimits(h)
		for k, v := range from {
			if !(own && proxy.IsRateLimitHeader(k)) {
				h[k] = v
			}
		}
		return
	}
	for k, v := range from {
		if answerHeader(k) && h[k] == nil {
			h[k] = v
		}
	}
	if v := from.Get("Cache-Control"); v != "" {
		h["Cache-Control"] = []string{clientCacheControl(v, cc)}
	}
}

// clientCacheControl is the Cache-Control a client of a flight gets:
// flight's, the flight's answer's (its leader's rule, under which the
// answer is stored), unless own (the client's cache plan, "" = none) says
// a shorter max-age for an answer the flight means to store. The lifetime
// told is the shorter of the client's rule and the stored entry's, as a
// HIT of the entry tells it a moment later (Runtime.freshness): a
// follower with a 5-minute rule behind a leader with a 1-minute one was
// told max-age=300 for an answer the gateway kept a minute.
func clientCacheControl(flight, own string) string {
	if own == "" || flight == "" || flight == "no-store" {
		return flight
	}
	if ownAge, ok := maxAgeOf(own); ok {
		if flightAge, ok := maxAgeOf(flight); ok && flightAge < ownAge {
			return flight
		}
	}
	return own
}

// maxAgeOf reads the max-age of a Cache-Control the gateway wrote
// (Runtime.cacheControl: "max-age=N" last).
func maxAgeOf(cc string) (int, bool) {
	i := strings.LastIndex(cc, "max-age=")
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(cc[i+len("max-age="):])
	return n, err == nil
}

// answerHeader reports whether a flight's response header k (canonical)
// describes the answer itself, and so is every follower's: its
// representation (type, and length: the bytes are the same), its freshness as the gateway
// states it, the gateway's word on who answered, and its word to an nginx
// in front not to buffer a stream (X-Accel-Buffering, set on every relayed
// stream: a follower's stream is as live as the leader's), and on a
// refusal the backend's word on when to come back (Retry-After,
// Retry-After-Ms, X-Should-Retry: every sharer was refused at the same
// moment by the same push-back). An allowlist, not a
// list of what to drop: whatever else a backend sends (a hosted API's
// request ids, timing, x-ratelimit-*, cookies, its CDN's Cf-Ray,
// Cf-Cache-Status, Server-Timing, Via, Alt-Svc, Report-To/Nel,
// Strict-Transport-Security, Openai-Organization, X-Envoy-*, X-Ms-*,
// Apim-Request-Id, Anthropic-Ratelimit-*, ...) is the leader's call's own
// or the upstream account's, under names no list can foresee. A cache HIT
// gets the same (its entry keeps only the Content-Type); the gateway then
// adds the client's own X-Request-Id, X-Cache and limits.
func answerHeader(k string) bool {
	switch k {
	case "Content-Type", "Content-Length", "Cache-Control", "X-Sluice-Model", "X-Sluice-Backend", "X-Accel-Buffering",
		"Retry-After", "Retry-After-Ms", openai.ShouldRetryHeader:
		return true
	}
	return false
}

// KeepForeignError keeps the wrapped error body, as a function of the
// request id, and its note for the followers, before the head
// (proxy.ForeignErrorWriter); the leader's own goes to the buffer.
func (w *flightWriter) KeepForeignError(note string, body func(reqID string) []byte) {
	f := w.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.foreign, f.foreignNote = body, note
}

// foreignBody is the wrapped error body a follower of an error answer
// makes for itself (KeepForeignError), nil for the leader (its body is
// the buffer's), a success, or an error body that passed as it came.
func (f *flight) foreignBody(leader bool, status int) func(reqID string) []byte {
	if leader || status < 400 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.foreign
}

// foreignNoteOf is the log's note of the wrapped error body a follower
// got (foreignBody), "" when it got none.
func (f *flight) foreignNoteOf(status int) string {
	if f.foreignBody(false, status) == nil {
		return ""
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.foreignNote
}
