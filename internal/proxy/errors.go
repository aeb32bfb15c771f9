package proxy

import (
	"errors"
	"fmt"
	"net"

	"github.com/sluice-gw/sluice/internal/h1client"
)

// Errors that end a request. The gateway maps them to a status and an
// OpenAI error object in one place (gateway/errors.go); here they only say
// what happened.
var (
	// ErrNoBackend: every backend of the pool is ejected or probed down.
	ErrNoBackend = errors.New("no healthy backend")
	// ErrSaturated: healthy backends exist but all are at their concurrency cap.
	ErrSaturated = errors.New("every backend is at its concurrency limit")
	// ErrConnect: the backend could not be reached.
	ErrConnect = errors.New("cannot connect to backend")
	// ErrTLS: TLS with the backend failed (its certificate not verified,
	// our client certificate refused). It wraps ErrConnect: to the client
	// and to retries it is a connection failure; unlike a refused
	// connection it is a configuration problem, logged with its cause.
	ErrTLS = fmt.Errorf("%w: TLS with the backend failed", ErrConnect)
	// ErrFirstByteTimeout: the backend took too long to start answering.
	ErrFirstByteTimeout = errors.New("backend did not answer in time")
	// ErrFirstTokenTimeout: a stream's first token did not come within the
	// request's first-token bound (Request.FirstToken). It wraps
	// ErrFirstByteTimeout: to the client both are a backend too slow to start.
	ErrFirstTokenTimeout = fmt.Errorf("%w: no first token within the stream's bound", ErrFirstByteTimeout)
	// ErrProbeTimeout: a backend asked about a response id nobody
	// remembers (a follow-up's probe) did not answer within the probe
	// bound. It wraps ErrFirstByteTimeout: a backend too slow to start.
	ErrProbeTimeout = fmt.Errorf("%w: no answer to a follow-up's probe within its bound", ErrFirstByteTimeout)
	// ErrSendTimeout: the backend took none of the request's body for
	// timeouts.stream_idle (h1client.ErrSendStalled: it answered a 2xx
	// head early and reads no more, or hangs without reading; through
	// net/http, its transport pulled none of the body: sendbound.go). It wraps
	// ErrFirstByteTimeout: no answer came in time, a backend failure.
	ErrSendTimeout = fmt.Errorf("%w: it stopped taking the request body", ErrFirstByteTimeout)
	// ErrStreamIdle: the backend stopped sending in the middle of a response.
	ErrStreamIdle = errors.New("backend stream idle for too long")
	// ErrShuttingDown is the cause a request's context is cancelled with
	// when the gateway's shutdown_grace ends (or a second signal cuts the
	// drain) before the request did: the client is still there and is
	// told so (503 shutting_down, or an in-band error event on a stream
	// already committed), where a cancelled context otherwise means the
	// client left.
	ErrShuttingDown = errors.New("the gateway is shutting down")
	// ErrKeyRevoked is the cause a request's context is cancelled with
	// when a config reload removes the API key it runs under: its client
	// is told so (401 api_key_revoked, or an in-band error event on a
	// stream already committed), as for ErrShuttingDown.
	ErrKeyRevoked = errors.New("the request's API key was removed by a config reload")
	// ErrTokenBudget: a stream's token limits refused it more tokens
	// (Request.Budget); the stream was ended there, told in-band.
	ErrTokenBudget = errors.New("the token rate limit ran out mid-stream")
	// ErrTotalTimeout: the request exceeded its total time limit.
	ErrTotalTimeout = errors.New("request exceeded its total time limit")
	// ErrUpstream: the backend failed in another way (reset, bad response).
	ErrUpstream = errors.New("backend failed")
	// ErrStaleConnection: a pooled keep-alive connection failed before
	// one byte of answer (h1client.Unanswered): the backend closed it as
	// the request went out, as a backend being stopped does. It wraps
	// ErrUpstream: to the client a backend failure.
	ErrStaleConnection = fmt.Errorf("%w: its keep-alive connection closed before an answer", ErrUpstream)
	// ErrBadAnswer: the backend answered 2xx with something that is not
	// what the API promises: a body that is not a JSON object, a stream
	// event whose data is neither a JSON object nor [DONE], or a stream
	// that ended without [DONE]. It counts as a backend failure.
	ErrBadAnswer = errors.New("backend sent a malformed answer")
	// ErrBackendRetired: the backend left its pool (discovery, reload)
	// and its drain (shutdown_grace) ended with this attempt still running.
	ErrBackendRetired = errors.New("backend removed from its pool")
	// ErrRetryBudget: the request would have been retried but the retry
	// budget is spent; wraps the error of the last attempt.
	ErrRetryBudget = errors.New("retry budget exhausted")
)

func classifyTransportError(err, cause error) error {
	switch {
	case errors.Is(cause, ErrFirstByteTimeout): // or ErrFirstTokenTimeout, which wraps it
		return cause
	case errors.Is(cause, ErrTotalTimeout):
		return ErrTotalTimeout
	}
	if errors.Is(err, ErrSendTimeout) { // net/http's send bound (sendbound.go)
		return err
	}
	if errors.Is(err, h1client.ErrSendStalled) {
		return fmt.Errorf("%w: %w", ErrSendTimeout, err)
	}
	var op *net.OpError
	if tlsFailure(err) {
		return fmt.Errorf("%w: %w", ErrTLS, err)
	}
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("%w: %w", ErrConnect, err)
	}
	return fmt.Errorf("%w: %w", ErrUpstream, err)
}
