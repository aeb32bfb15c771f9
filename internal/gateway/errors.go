package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// apiError maps any error a stage returns to the status and OpenAI error
// object the client sees. This is the one place that decides it.
//
// Retry-After: every refusal for want of capacity (429, 503) carries one,
// the gateway's own estimate where it has one (admission's drain rate, a
// rate limit's refill) and a fixed short wait where it has not. Every 502
// carries upstreamRetry: the backend that failed (unreachable, reset,
// protocol failure, malformed answer) was charged a failure, so a retry a
// second later is routed past it, or finds it ejected and says so (503
// no_healthy_backend, with its own Retry-After: noBackend). A 504 carries none: a
// backend too slow to start or to go on says nothing of when it will be
// faster, and a fixed hint would bring a slow pool every client's retry in
// the same second; the SDKs' own backoff (exponential, jittered) is the
// better schedule. None of these is Final: each can pass a second later.
// A Retry-After past what the SDKs wait (admission's estimates reach 5
// minutes, a slow rate limit's refill more) gets x-should-retry: false
// from openai.WriteError, so they do not retry it within seconds.
func apiError(err error, model string) *openai.Error {
	var e *openai.Error
	var rej *admission.Rejection
	var bodyTimeout *netguard.BodyTimeoutError
	var refused *auth.Failure
	var overBound *bodyBoundError
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &refused) && refused.Reason == auth.ReasonKeysUnavailable:
		// Not judged: no key set was ever fetched to judge it with. A 401
		// would tell a valid token's bearer (and its SDK, which never
		// retries one) that it is wrong; this is the gateway's outage.
		// The text names no config key: it said auth.jwt.jwks_url, wrong
		// with several issuers, and the right one (the entry's index) is
		// the gateway's layout, not the client's business. The access
		// line's cause names it (Verifier.keysUnavailable).
		return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "auth_keys_unavailable",
			Message:    "the gateway cannot check bearer tokens yet: it has not fetched the keys of the token's issuer; retry shortly",
			RetryAfter: refused.RetryAfter}
	case errors.As(err, &refused):
		// One answer whatever the reason: which check failed would tell
		// an attacker what to change.
		return errInvalidToken
	case errors.As(err, &rej):
		code, typ := rej.Reason.String(), openai.TypeServer
		if code == "saturated" {
			code = "pool_saturated"
		}
		if rej.Reason.HTTPStatus() == http.StatusTooManyRequests {
			typ = openai.TypeRateLimit
		}
		return &openai.Error{Status: rej.Reason.HTTPStatus(), Type: typ, Code: code, Message: rej.Message, RetryAfter: rej.RetryAfter}
	case errors.As(err, &overBound):
		return &openai.Error{Status: http.StatusRequestEntityTooLarge, Type: openai.TypeInvalidRequest,
			Code: "request_too_large", Message: overBound.Error()}
	case errors.Is(err, proxy.ErrBodyTooLarge):
		return &openai.Error{Status: http.StatusRequestEntityTooLarge, Type: openai.TypeInvalidRequest,
			Code: "request_too_large", Message: "request body exceeds the gateway's size limit"}
	case errors.Is(err, proxy.ErrBodyMemory):
		return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "body_memory_full",
			Message: "the gateway holds as many request bodies as its memory bound allows; retry shortly", RetryAfter: time.Second}
	case errors.As(err, &bodyTimeout):
		return &openai.Error{Status: http.StatusRequestTimeout, Type: openai.TypeInvalidRequest, Code: "request_timeout",
			Message: bodyTimeout.Error()}
	case errors.Is(err, admission.ErrNoSpare):
		return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "no_spare_capacity",
			Message: "no spare capacity for queued work on model '" + model + "' now", RetryAfter: time.Second}
	case errors.Is(err, proxy.ErrSaturated):
		return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "pool_saturated",
			Message: "every backend" + forModel(model) + " is at its concurrency limit; retry shortly", RetryAfter: time.Second}
	case errors.Is(err, proxy.ErrNoBackend):
		wait := noBackendWait
		var nb *noBackendError
		if errors.As(err, &nb) {
			wait = nb.retryAfter
		}
		return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "no_healthy_backend",
			Message: "no healthy backend" + forModel(model), RetryAfter: wait}
	case errors.Is(err, proxy.ErrConnect):
		e := &openai.Error{Status: http.StatusBadGateway, Type: openai.TypeServer, Code: "upstream_unreachable",
			Message: "could not connect to a backend" + forModel(model), RetryAfter: upstreamRetry}
		if errors.Is(err, proxy.ErrTLS) {
			e.Cause = err // a TLS setting to fix: the log says which (unknown authority, name, client certificate)
		}
		return e
	case errors.Is(err, proxy.ErrBadAnswer):
		return &openai.Error{Status: http.StatusBadGateway, Type: openai.TypeServer, Code: "upstream_bad_response",
			Message: "a backend" + forModel(model) + " sent a malformed answer", RetryAfter: upstreamRetry}
	case errors.Is(err, proxy.ErrProbeTimeout):
		return &openai.Error{Status: http.StatusGatewayTimeout, Type: openai.TypeServer, Code: "upstream_timeout",
			Message:    "a backend did not answer within the bound of a follow-up (timeouts.connect); it may hold the response",
			RetryAfter: upstreamRetry}
	case errors.Is(err, proxy.ErrFirstTokenTimeout):
		return &openai.Error{Status: http.StatusGatewayTimeout, Type: openai.TypeServer, Code: "upstream_timeout",
			Message: "the backend did not start the stream within its time-to-first-token bound"}
	case errors.Is(err, proxy.ErrSendTimeout):
		return &openai.Error{Status: http.StatusGatewayTimeout, Type: openai.TypeServer, Code: "upstream_timeout",
			Message: "the backend stopped reading the request body (timeouts.stream_idle)"}
	case errors.Is(err, proxy.ErrFirstByteTimeout):
		return &openai.Error{Status: http.StatusGatewayTimeout, Type: openai.TypeServer, Code: "upstream_timeout",
			Message: "the backend did not start answering within the first-byte timeout"}
	case errors.Is(err, proxy.ErrTotalTimeout):
		return &openai.Error{Status: http.StatusGatewayTimeout, Type: openai.TypeServer, Code: "request_timeout",
			Message: "the request exceeded the gateway's total time limit"}
	case errors.Is(err, proxy.ErrStreamIdle):
		return &openai.Error{Status: http.StatusGatewayTimeout, Type: openai.TypeServer, Code: "upstream_idle_timeout",
			Message: "the backend stopped sending data"}
	case errors.Is(err, proxy.ErrShuttingDown):
		// The drain's bound passed with the request still running (or
		// queued): another replica can serve it at once.
		return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "shutting_down",
			Message:    "the gateway is shutting down and its drain time (shutdown_grace) ended before this request did; retry",
			RetryAfter: time.Second}
	case errors.Is(err, proxy.ErrKeyRevoked):
		// A reload removed the key the request was running under: what a
		// new request with it gets, but naming the revocation (no key).
		return &openai.Error{Status: http.StatusUnauthorized, Type: openai.TypeInvalidRequest, Code: "api_key_revoked",
			Message: "the API key this request was made with has been revoked; the request was ended"}
	case errors.Is(err, context.Canceled):
		// nginx's 499: the client closed the request; nobody reads this.
		return &openai.Error{Status: 499, Type: openai.TypeServer, Code: "client_closed_request", Message: "client closed the request"}
	case errors.Is(err, errReadBody):
		return openai.BadRequest("invalid_body", "could not read the request body")
	default:
		// A reset or a protocol failure of the backend (proxy.ErrUpstream:
		// a bad head, a short body), or anything unexpected: the text may
		// name backends, Go types or internals. The client gets a generic
		// answer with the request id (writeError adds it); the cause is
		// logged in full (record.fail, finish).
		return &openai.Error{Status: http.StatusBadGateway, Type: openai.TypeServer, Code: "upstream_error",
			Message: "the backend failed", RetryAfter: upstreamRetry, Cause: err}
	}
}

// forModel names the model a refusal is about; "" (a follow-up of the
// Responses API, which names a response, not a model) names none, rather
// than an empty model name in quotes.
func forModel(model string) string {
	if model == "" {
		return ""
	}
	return " for model '" + model + "'"
}

// upstreamRetry is the Retry-After of every 502 (apiError): a second, as
// for the 503s of a saturated pool, long enough for the failure to have
// been counted against the backend that failed.
const upstreamRetry = time.Second

// errReadBody tags a failure to read the client's request body.
var errReadBody = errors.New("reading the request body")

// writeError answers with e in the OpenAI shape, with Retry-After headers
// when the client should come back. An unexpected error (e.Cause set) is
// answered with its generic message and the request id, so the client can
// quote the id and an operator can find the logged cause.
func writeError(w http.ResponseWriter, e *openai.Error) {
	if e.Cause != nil {
		c := *e
		if id := w.Header().Get("X-Request-Id"); id != "" {
			c.Message += " (request id " + id + ")"
		}
		e = &c
	}
	openai.WriteError(w, e)
}

// bodyBoundError is a body refused past the bound of its path: the 413
// names the bound's size and its config key, as OpenAI's names its
// ("Maximum content size limit (26214400) exceeded"), so a client knows
// how far to shrink and an operator which key to raise.
type bodyBoundError struct {
	what  string // "request body", "audio form"
	key   string // the config key: max_body_bytes, max_audio_body_bytes
	limit int64
}

func (e *bodyBoundError) Error() string {
	return fmt.Sprintf("the %s exceeds the gateway's size limit of %d bytes (%s)", e.what, e.limit, e.key)
}

// Unwrap makes it proxy.ErrBodyTooLarge for every errors.Is.
func (e *bodyBoundError) Unwrap() error { return proxy.ErrBodyTooLarge }
