package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/outcome"
)

// A backend that ignores the request's "stream" answers in the other
// shape: a JSON completion to a stream request, an event stream to a plain
// one. Relayed as it came, the client cannot read it (an SDK waiting for
// events gets no [DONE]; one decoding JSON gets "data: ..."). A coalesced
// flight answers each client in its own shape already (gateway
// relayConverted); the plain relay does the same with the same converters
// (internal/openai): the answer is held whole, checked, converted, then
// sent. One that cannot be converted (incomplete, carrying an error, over
// maxCheckedAnswer, not a completion) is ErrBadAnswer, before anything
// reached the client.
//
// An audio request's event stream (a transcription's or translation's,
// in vLLM's or OpenAI's format) becomes the transcription JSON,
// {"text":...,"usage":...} (openai.TranscriptToJSON), not a chat
// completion. Not for response_format verbose_json: its segments,
// language and duration are not in the events, and an answer without
// them would pass for a whole one; that is ErrBadAnswer.

// asStream turns a held JSON completion (over: there was more than the
// bound) into the event stream a stream request gets, and resp's head
// into its head.
func asStream(resp *http.Response, held []byte, over bool) ([]byte, error) {
	if over {
		return nil, fmt.Errorf("%w: a JSON answer to a stream request, too large to convert", ErrBadAnswer)
	}
	sse, err := openai.JSONToSSE(held, false)
	if err != nil {
		return nil, fmt.Errorf("%w: a JSON answer to a stream request: %w", ErrBadAnswer, err)
	}
	resp.Header["Content-Type"] = []string{"text/event-stream"}
	delete(resp.Header, "Content-Length")
	return sse, nil
}

// relayStreamAsAnswer relays an event stream sent for a plain request as
// the JSON completion the client asked for.
func (f *Forwarder) relayStreamAsAnswer(ctx, actx context.Context, w http.ResponseWriter, c call,
	resp *http.Response, wd *watchdog, in *Request, start time.Time, res *Result) (retry bool) {
	bufp := relayBufPool.Get().(*[]byte)
	defer relayBufPool.Put(bufp)
	if in.Peek.API == openai.APIResponses {
		drain(resp.Body)
		return f.failEarly(ctx, c, fmt.Errorf("%w: a stream answer to a plain Responses request", ErrBadAnswer), start, res)
	}
	if in.Endpoint.Multipart() && verboseTranscription(in) {
		drain(resp.Body)
		return f.failEarly(ctx, c, fmt.Errorf("%w: a stream answer to a verbose_json transcription, whose segments no stream carries", ErrBadAnswer), start, res)
	}
	held, over, readErr := f.hold(resp.Body, wd, *bufp)
	if readErr != nil {
		return f.failEarly(ctx, c, readFailure(actx, readErr), start, res)
	}
	if over {
		return f.failEarly(ctx, c, fmt.Errorf("%w: a stream answer to a plain request, too large to convert", ErrBadAnswer), start, res)
	}
	chk := sseCheck{transcript: in.Endpoint.Multipart()}
	if _, bad := chk.feed(held, true); bad || !(chk.done || chk.final) || chk.errored {
		return f.failEarly(ctx, c, fmt.Errorf("%w: a stream answer to a plain request that is not a whole stream", ErrBadAnswer), start, res)
	}
	accumulate := openai.AccumulateStream
	if in.Endpoint.Multipart() {
		// A transcription's events, as the JSON transcription asked for
		// (not a chat completion, which its chunks are not).
		accumulate = openai.TranscriptToJSON
	}
	body, err := accumulate(held)
	if err != nil {
		return f.failEarly(ctx, c, fmt.Errorf("%w: a stream answer to a plain request: %w", ErrBadAnswer, err), start, res)
	}
	resp.Header["Content-Type"] = []string{"application/json"}
	resp.Header["Content-Length"] = []string{strconv.Itoa(len(body))}

	f.commit(w, c.b, resp, in, start, res)
	if in.Capture != nil {
		in.Capture.write(body)
	}
	writeErr := writeInPieces(clientWriter{f: f, w: w, wd: wd}, body, len(*bufp))
	res.Usage, res.UsageKnown = in.findUsage(held[max(0, len(held)-tailSize):])
	in.boundUsage(res)
	if errors.Is(ctx.Err(), context.Canceled) || writeErr != nil {
		res.Err = context.Canceled
	}
	tokens := 0
	if res.UsageKnown {
		tokens = res.Usage.CompletionTokens
	}
	c.endAnswer(f.opt.Now(), outcome.Success, res.TTFB, tokens, false)
	return false
}

// verboseTranscription reports an audio request that asked for
// verbose_json. The form is read again: only a backend that streams
// unasked gets here.
func verboseTranscription(in *Request) bool {
	if in.Body == nil {
		return false
	}
	_, a, err := openai.ParseMultipartRequest(headerGet(in.Header, "Content-Type"), in.Body.Bytes())
	return err == nil && a.Verbose
}
