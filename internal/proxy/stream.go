package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/outcome"
)

// relayStream relays a 2xx event stream event by event, each checked
// (sseCheck) and flushed as soon as it is whole. The response is committed
// with the first valid event (a Responses API stream's: with its first
// output event, responses.go), so a stream that is malformed or breaks off
// before it fails the attempt like a refused connection and may go to
// another backend. Later, a malformed event, a broken connection or an end
// without [DONE] ends the client's stream with an in-band error event
// after the last whole event, and counts as a backend failure. Valid
// streams pass byte for byte.
func (f *Forwarder) relayStream(ctx, actx context.Context, w http.ResponseWriter, c call,
	resp *http.Response, wd *watchdog, in *Request, start time.Time, res *Result) (retry bool) {
	sb := streamBufsPool.Get().(*streamBufs)
	sb.usage.reset()
	chk := sseCheck{api: in.Peek.API, transcript: in.Endpoint.Multipart()}
	s := streamRelay{f: f, w: w, c: c, resp: resp, wd: wd, start: start,
		sb: sb, rb: readBuf{small: sb.small[:], count: f.opt.RelayBuffers}, chk: &chk}
	s.flusher, _ = w.(http.Flusher)
	defer s.release()
	// holdPings: while a first-token deadline runs (Request.FirstToken,
	// timeouts.first_token_factor, when the watchdog kept it at the
	// head), keep-alive comments before the first event with data
	// (": ping", which hosted APIs such as OpenRouter send while a
	// request queues) commit nothing and stop no watchdog: they are held
	// and go out with the first data. A backend that pings past the
	// deadline fails over as a silent one does; committed on a ping, the
	// stream could only end in an error event. Without a deadline they go
	// out as they come, and keep the stream-idle bound off, as before.
	// Per API: openai.APIChat is the chat family, not chat alone: chat
	// completions, legacy text completions (/v1/completions) and streamed
	// transcriptions (the audio endpoints' transcript.text.delta), whose
	// first data is a token, so all three hold their pings. A Responses
	// stream needs no holdPings: everything before its first output event
	// (lifecycle events and pings alike) is held anyway, and no read
	// restarts its watchdog before the commit. Nothing else streams
	// (embeddings and the pooling, tokenizer and moderation endpoints
	// answer one JSON object).
	s.holdPings = wd.firstTokenDue() && chk.api == openai.APIChat
	s.copyEvents(resp.Body, in, res)
	s.readUsage(in, res)
	return s.end(ctx, actx, in, res)
}

// streamRelay is one relayed stream's state, from its first read to its
// end (relayStream). It lives on relayStream's stack: its methods are the
// stream's steps, cut apart to read one at a time, and hold no reference
// to it past the stream. The request and its Result are passed to them,
// not kept: escape analysis does not tell a struct's fields apart, and
// kept beside the writer (which escapes) they would escape with it,
// moving Forward's Result to the heap (TestProxyDefersOpenCoded).
type streamRelay struct {
	f       *Forwarder
	w       http.ResponseWriter
	flusher http.Flusher
	c       call // its own copy: fed is set on it (call.fed)
	resp    *http.Response
	wd      *watchdog
	start   time.Time
	sb      *streamBufs // pooled: the read buffer, the usage tail and the first write
	rb      readBuf
	chk     *sseCheck
	// held: a Responses stream's events before its first token
	// (responses.go); a chat stream's keep-alives (holdPings).
	held              []byte
	readErr, writeErr error
	bad, overBudget   bool
	holdPings         bool // see relayStream
	// startPending: the stream is committed, its first token not yet
	// come: its first events were comments only (a keep-alive sent before
	// the engine began), which start no generation (startKnown). The
	// backend's latency and the ticket learn the start at the first data.
	startPending bool
}

// release returns the stream's buffers to their pools.
func (s *streamRelay) release() {
	s.rb.release()
	streamBufsPool.Put(s.sb)
}

// copyEvents reads the backend's stream and relays its whole, checked
// events until it ends, breaks off or turns out malformed, the client's
// write fails, or the client's token budget runs out.
func (s *streamRelay) copyEvents(body io.Reader, in *Request, res *Result) {
	for {
		n, err := body.Read(s.rb.next())
		if n > 0 && (res.Written || s.chk.api == openai.APIChat && !s.holdPings) {
			s.wd.idle(s.f.opt.Timeouts.StreamIdle)
		}
		eof := err == io.EOF
		data := s.rb.data(n)
		k, malformed := s.chk.whole(data, eof)
		out := s.holdBack(s.chk.closeFinal(data[:k]), res) // valid until rb.keep
		if len(out) > 0 && !s.pass(out, in, res) {
			return
		}
		s.rb.keep(data, k)
		if malformed {
			s.bad = true
			return
		}
		if err != nil {
			if !eof {
				s.readErr = err
			}
			return
		}
	}
}

// holdBack keeps events that must not commit the response (a Responses
// stream's before its first output event, keep-alives under holdPings)
// in held, and returns what is to be relayed now: out, or nothing.
func (s *streamRelay) holdBack(out []byte, res *Result) []byte {
	if len(out) > 0 && !res.Written && len(s.held)+len(out) <= maxHeldLifecycle &&
		(s.chk.api == openai.APIResponses && !s.chk.resp.output || s.holdPings && !startKnown(out, s.chk)) {
		s.held = append(s.held, out...) // out is the check's until the next feed
		return nil
	}
	return out
}

// pass relays events checked whole: the first commits the response; each
// is counted against the client's token budget, kept for usage, captured,
// written and flushed. It reports whether the copy goes on.
func (s *streamRelay) pass(out []byte, in *Request, res *Result) (more bool) {
	first := !res.Written
	if first { // the first valid event: the first token, unless a keep-alive
		out = s.commitFirst(out, in, res)
	} else if s.startPending && startKnown(out, s.chk) {
		// The first data after keep-alives: its own time is the
		// time to first token (a ping is no start of generation:
		// learnt from it, a queueing backend looked prompt).
		now := s.f.opt.Now()
		s.firstToken(now, now.Sub(s.start), in)
	}
	if in.CountText {
		out = s.countText(out, in, res)
	}
	s.sb.usage.write(out)
	if in.Capture != nil {
		in.Capture.write(out)
	}
	if first { // on a worker's stack: it writes the head (deepcall.go)
		s.writeErr = s.f.firstWrite(s.sb.first, s.w, s.flusher, s.wd, out)
	} else if _, s.writeErr = s.f.toClient(s.w, s.wd, out); s.writeErr == nil && s.flusher != nil {
		s.flusher.Flush()
	}
	if s.writeErr != nil {
		return false
	}
	if in.ReleaseBody && !res.BodyReleased {
		releaseBody(in, res) // the head and first event are out
	}
	return !s.overBudget
}

// commitFirst commits the response with the stream's first valid events
// out, learns the stream's start if they carry data, and returns them
// after the events held before them.
func (s *streamRelay) commitFirst(out []byte, in *Request, res *Result) []byte {
	s.f.commit(s.w, s.c.b, s.resp, in, s.start, res)
	if s.holdPings {
		s.wd.idle(s.f.opt.Timeouts.StreamIdle) // the first token came: the gap's bound from here
	}
	if !s.c.cpu { // a CPU-side call's time is learnt by nothing
		s.startPending = true
		if startKnown(out, s.chk) {
			s.firstToken(s.f.opt.Now(), res.TTFB, in)
		}
	}
	if s.held != nil {
		out, s.held = append(s.held, out...), nil
	}
	return out
}

// firstToken tells the backend's first-token estimates, and the request's
// ticket unless the first data was the backend's error, that the stream's
// first token came at now, ttft after the attempt's start.
func (s *streamRelay) firstToken(now time.Time, ttft time.Duration, in *Request) {
	s.startPending = false
	prompt := s.c.b.FirstTokenOf(now, ttft, s.c.wait())
	s.c.fed = true
	if in.Started != nil && !s.chk.errFirst {
		in.Started.FirstToken(prompt)
	}
}

// countText counts the text events in out and, past the client's token
// budget (Request.Budget), cuts out to the events within its grant and
// marks the stream over budget.
func (s *streamRelay) countText(out []byte, in *Request, res *Result) []byte {
	ev, tb := openai.CountText(out, s.chk.api)
	res.TextEvents += ev
	res.TextBytes += tb
	if in.Budget == nil || ev == 0 {
		return out
	}
	granted, ok := in.Budget.Allow(openai.CompletionTokens(res.TextEvents, res.TextBytes))
	if ok {
		return out
	}
	// The events within the grant are relayed, then the stream
	// ends. The count is what was relayed: the rest of the
	// block was read ahead by the gateway, a read's worth (up
	// to 32 KiB) that varies with the backend's pace; the
	// client is charged what it got, within the grant.
	out = out[:openai.TextWithin(out, s.chk.api, res.TextEvents-ev, res.TextBytes-tb, granted)]
	kept, keptBytes := openai.CountText(out, s.chk.api)
	res.TextEvents += kept - ev
	res.TextBytes += keptBytes - tb
	s.overBudget = true
	return out
}

// readUsage reads the stream's usage from its tail, a Responses stream's
// from its final event, bounded by the request's.
func (s *streamRelay) readUsage(in *Request, res *Result) {
	res.Usage, res.UsageKnown = in.findUsage(s.sb.usage.buf)
	if s.chk.api == openai.APIResponses && res.Written {
		res.Usage, res.UsageKnown, res.ResponseID = s.chk.resp.usage, s.chk.resp.usageKnown, s.chk.resp.id
	}
	in.boundUsage(res)
}

// end judges the stream once the copy stopped (streamVerdict): one that
// committed nothing fails early and may be retried; a committed one ends
// the client's stream with an error event if it failed or ran out of
// budget, and its call with the outcome and the time to its first token.
func (s *streamRelay) end(ctx, actx context.Context, in *Request, res *Result) (retry bool) {
	fail, clientGone := streamVerdict(ctx, actx, s.readErr, s.writeErr, s.bad, s.chk.ended(), s.chk.api)
	if !res.Written {
		if fail == nil && !clientGone {
			fail = fmt.Errorf("%w: an empty stream", ErrBadAnswer)
		}
		return s.f.failEarly(ctx, s.c, fail, s.start, res)
	}
	out := outcome.Success
	if s.overBudget && !clientGone {
		// The client's token limits ran out, not the backend: a success
		// for its health; the client is told why its answer stops.
		res.Err = ErrTokenBudget
		s.f.sendStreamError(s.w, res.Err, in, s.chk)
	} else if fail != nil {
		out = outcome.Failure
		res.Err = fail
		s.f.sendStreamError(s.w, fail, in, s.chk)
	} else if clientGone {
		res.Err = context.Canceled
		if cut := s.f.endCutStream(ctx, s.w, s.writeErr, in, s.chk); cut != nil {
			res.Err = cut
		}
	}
	// The latency signal for health, p2c and the adaptive limit: time to
	// the first token (headers alone may come before any work). A stream
	// committed on keep-alives whose data never came (its client left, a
	// total timeout) has waited this long at least, as a silent one
	// (failEarly): the commit's time is the ping's, about 0, and learnt
	// as a success's it made a queueing backend look the promptest.
	now := s.f.opt.Now()
	latency := res.TTFB
	if s.startPending {
		latency = now.Sub(s.start)
	}
	s.c.end(now, out, latency, 0, clientGone && s.readErr != nil)
	return false
}

// releaseBody releases the request's body for a caller that handed it
// over (Request.ReleaseBody), once the client's response is committed
// and its first bytes are flushed: no attempt can send the body again.
func releaseBody(in *Request, res *Result) {
	if in.ReleaseBody && in.Body != nil && res.Written {
		in.Body.Release()
		res.BodyReleased = true
	}
}

// smallRead is the read buffer a stream waits on for its next event:
// a token's event is a few hundred bytes (~250 in OpenAI's and vLLM's
// chat chunks), and a backend that keeps pace with its engine writes one
// or a few per read. It was 4 KiB: 3 KiB of every held stream's memory
// that a stream one token at a time never uses.
const smallRead = 1 << 10

// midRead is the buffer a stream moves to from smallRead (midBufPool):
// what smallRead was before, so a stream whose reads outgrow 1 KiB (large
// events, logprobs, a few events a read) holds what it did then.
const midRead = 4 << 10

// midBufPool holds the midRead buffers.
var midBufPool = sync.Pool{New: func() any { b := make([]byte, midRead); return &b }}

// readBuf is a relayed stream's read buffer. It reads into a small one
// (the stream's streamBufs carry it) while the backend's writes are read as
// they come. A read that fills it moves the stream to a pooled 4 KiB one
// (midRead), and a read that fills that to a pooled relayBufPool buffer
// (32 KiB, as the upstream connection's buffer), each for the rest of the
// stream. So a stream that keeps pace with its backend, as a long one
// waiting on tokens does, holds 1 KiB rather than 32 while it waits, and
// one that falls behind reads in large blocks after two reads more than
// it would from the start. (Going back to the small buffer after each
// short read was tried: in one of two A/B runs on a loaded machine it
// cost 6-11% more CPU per event, plausibly a backlog read 4 KiB at a
// time, each read a flush.)
//
// An event cut across reads stays in the buffer: its start is moved to
// the front (carry) and the next read lands after it, so the check scans
// it whole in place. (It used to be copied, with the rest of the read,
// into a second buffer of the check's own: a backend ahead of its client
// cuts nearly every 32 KiB read, so each stream held ~40 KiB more, and
// copied every byte twice.) An event longer than the buffer grows it
// (small to mid to big, then by doubling), past maxEvent at most (the
// check refuses an event over it); a buffer past big is not pooled.
type readBuf struct {
	small []byte
	mid   *[]byte // from the first read that filled small until big
	big   *[]byte
	huge  []byte // an event longer than big: not pooled
	carry int    // the start of an event cut across reads, at the front
	// count, when set, holds the bytes of big and huge while held
	// (Options.RelayBuffers).
	count *atomic.Int64
}

// counted adds n to the count of held large buffers.
func (r *readBuf) counted(n int) {
	if r.count != nil {
		r.count.Add(int64(n))
	}
}

// cur is the buffer in use.
func (r *readBuf) cur() []byte {
	switch {
	case r.huge != nil:
		return r.huge
	case r.big != nil:
		return *r.big
	case r.mid != nil:
		return *r.mid
	}
	return r.small
}

// up moves the stream to the next larger buffer. It returns the mid
// buffer it leaves, if any, for the caller to pool once it has copied
// what it carries out of it.
func (r *readBuf) up() (left *[]byte) {
	switch {
	case r.big != nil:
		b := r.cur()
		r.counted(2*len(b) - len(r.huge))
		r.huge = make([]byte, 2*len(b))
	case r.mid == nil:
		r.mid = midBufPool.Get().(*[]byte)
	default:
		left, r.mid = r.mid, nil
		r.big = relayBufPool.Get().(*[]byte)
		r.counted(bigRead)
	}
	return left
}

// next returns where the next read goes: after the carried bytes, in a
// larger buffer if they fill this one; at most bigRead bytes, so an
// event is refused at the same length whatever the buffer grew to (the
// check's bound is maxEvent plus at most one read).
func (r *readBuf) next() []byte {
	b := r.cur()
	if r.carry == len(b) {
		left := r.up()
		copy(r.cur(), b[:r.carry])
		if left != nil {
			midBufPool.Put(left)
		}
		b = r.cur()
	}
	return b[r.carry:min(len(b), r.carry+bigRead)]
}

// bigRead is the most a stream reads at once: relayBufPool's size.
const bigRead = 32 << 10

// data returns the carried bytes and the n the last read (into next's
// buffer) added after them.
func (r *readBuf) data(n int) []byte { return r.cur()[:r.carry+n] }

// keep carries data[k:] (the start of an event not yet whole) to the
// front for the next read; data[:k] is overwritten from here on. A read
// that filled the small or the mid buffer moves the stream to the next.
func (r *readBuf) keep(data []byte, k int) {
	var left *[]byte
	if r.big == nil && len(data) == len(r.cur()) {
		left = r.up()
	}
	r.carry = copy(r.cur(), data[k:])
	if left != nil {
		midBufPool.Put(left)
	}
}

func (r *readBuf) release() {
	if r.mid != nil {
		midBufPool.Put(r.mid)
		r.mid = nil
	}
	if r.big != nil {
		relayBufPool.Put(r.big)
		r.big = nil
		r.counted(-bigRead - len(r.huge))
	}
	r.huge, r.carry = nil, 0
}

// streamVerdict judges a relayed stream once the copy loop has stopped: why
// it failed, if the backend is to blame, and whether the client left. It is
// kept apart from the loop so the rules of blame read in one place: a client
// that left is never the backend's failure, whatever else went wrong; a
// stream that ended cleanly (ended: [DONE], a Responses stream's final
// event, a transcription's transcript.text.done, or an in-band error
// event) is not
// one either here (the backend's own error event is relayed as it is).
func streamVerdict(ctx, actx context.Context, readErr, writeErr error, bad, ended bool, api openai.API) (fail error, clientGone bool) {
	clientGone = writeErr != nil || errors.Is(ctx.Err(), context.Canceled) // whatever the cause
	if clientGone && writeErr == nil && ended && !bad {
		// The client left once its stream's end was relayed (an SDK
		// closes its connection at [DONE]; a lone flight leader's close
		// ends the flight's context while the relay still waits for the
		// backend's end of body): it cut nothing, the answer was whole.
		return nil, false
	}
	switch {
	case clientGone:
	case readErr != nil:
		fail = readFailure(actx, readErr)
	case bad:
		fail = fmt.Errorf("%w: a stream event that is neither a JSON object nor [DONE]", ErrBadAnswer)
	case !ended && api == openai.APIResponses:
		fail = fmt.Errorf("%w: the stream ended without its final event", ErrBadAnswer)
	case !ended:
		fail = fmt.Errorf("%w: the stream ended without [DONE]", ErrBadAnswer)
	}
	return fail, clientGone
}

// startKnown reports whether the stream's start is settled by the events
// out just checked: Request.Started is told a first token at the first
// event with data, unless that event was the backend's in-band error
// (sseCheck.errFirst: tokens before an error in the same read did start
// the generation). A
// stream whose first data is an error started no generation: told it, a
// ramp probe failed at once would count a slot the engine never ran, and
// the tenant ramp a completion (admission.Ticket.FirstToken). Events
// without data (a keep-alive comment a proxy or an engine sends at once,
// before the stream is scheduled) start nothing: within a first-token
// bound they are held (relayStream's holdPings), without one they commit
// the stream; either way the backend's time to first token and the
// ticket are told at the first data. Told at them, a failure that
// followed counted as an answer and every start looked prompt.
func startKnown(out []byte, chk *sseCheck) bool {
	return chk.errored || carriesData(out)
}

// carriesData reports whether whole, checked events hold a data line.
func carriesData(events []byte) bool {
	for len(events) > 0 {
		if bytes.HasPrefix(events, []byte("data")) {
			return true
		}
		i := lineEnd(events)
		if i < 0 {
			return false
		}
		events = events[i+1:]
	}
	return false
}
