package proxy

import (
	"github.com/sluice-gw/sluice/internal/openai"
)

// A Responses API answer (Request.Peek.API, openai.APIResponses) is
// relayed as a chat answer is, byte for byte, with what the gateway
// derives from it read the Responses way:
//
//   - its stream has named events and no [DONE]: it is whole once its
//     final event (response.completed, .incomplete or .failed) or an
//     "error" event came; the error event is the backend's own in-band
//     failure, as a chat stream's error object is;
//   - the first token is the first event that is neither
//     response.created, .in_progress nor .queued: those are sent before
//     the model has produced anything (vLLM sends them at once). They are
//     held, unsent, until that event (or the stream's end) and then
//     committed with it, so a backend that fails before its first token
//     is retried as for chat (nothing reached the client), the first
//     token timeout still bounds the wait, and time to first token
//     measures the model, not the backend's bookkeeping;
//   - usage is the final event's response.usage (input_tokens and
//     output_tokens), or the JSON answer's top-level usage, read as
//     prompt and completion tokens;
//   - a stream the gateway must cut after its first token (the backend
//     died, went idle, sent a malformed event) ends with that API's own
//     "error" event, numbered after the last event relayed, not chat's
//     error object (streamErrorEvent);
//   - the response's id (the first event carrying the response, or the
//     JSON answer's "id") is reported in Result.ResponseID, so the
//     gateway can send follow-ups to the backend that holds it.
//
// An answer in the other shape than "stream" asks is not converted (no
// converter between the two shapes exists): ErrBadAnswer, before anything
// reached the client.

// respEvents is what a Responses API stream's events told the relay.
type respEvents struct {
	// output: an event after the lifecycle ones came (the first token).
	output     bool
	id         string
	usage      openai.Usage
	usageKnown bool
	// seq is the last event's sequence_number (seqKnown: one came), so
	// the gateway's own error event, if the stream breaks, numbers on.
	seq      int64
	seqKnown bool
}

// maxHeldLifecycle bounds the lifecycle events held before the first
// token (each echoes the request's instructions and tools): past it they
// are committed without waiting for one.
const maxHeldLifecycle = 256 << 10

// acceptResponses reads one valid event of a Responses API stream.
func (s *sseCheck) acceptResponses(data []byte) {
	kind, resp := openai.ResponseEvent(data)
	if n, ok := openai.EventSequence(data); ok {
		s.resp.seq, s.resp.seqKnown = n, true
	}
	switch kind {
	case openai.EventLifecycle:
		if s.resp.id == "" && resp != nil {
			s.resp.id = openai.ReadResponse(resp).ID
		}
	case openai.EventFinal:
		s.done, s.resp.output = true, true
		f := openai.ReadResponse(resp)
		if s.resp.id == "" {
			s.resp.id = f.ID
		}
		s.resp.usage, s.resp.usageKnown = f.Usage, f.UsageKnown
	case openai.EventError:
		s.errored, s.resp.output = true, true
	default:
		s.resp.output = true
	}
}

// streamErrorEvent is the in-band error that ends a committed stream the
// gateway cut: a Responses stream's own "error" event, numbered after the
// last event relayed; chat's error object otherwise.
func (s *sseCheck) streamErrorEvent(e *openai.Error) []byte {
	if s == nil || s.api != openai.APIResponses {
		return e.SSEEvent()
	}
	return e.ResponsesErrorEvent(s.resp.seq+1, s.resp.seqKnown)
}
