// Package proxy sends a request to a backend and relays the answer: it picks
// a backend through a Selector, retries on a different backend while nothing
// has reached the client yet (bounded by attempts and a retry budget),
// enforces the connect / first-byte / stream-idle / total timeouts, flushes
// SSE events as they arrive, and reports each attempt's outcome to the
// backend's health state.
package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/httpdate"
	"github.com/sluice-gw/sluice/internal/openai"
)

// Selector chooses the next backend for a request, avoiding those in tried.
// It returns nil and the reason (ErrNoBackend or ErrSaturated) when none can
// take the request.
type Selector interface {
	Select(tried []*endpoint.Backend) (*endpoint.Backend, error)
}

// UnreachableSelector is a Selector that may wait for a slot when it
// picks the retry of an attempt whose backend could not be reached: the
// request was admitted against a capacity that counted that backend's
// slots (its process gone before discovery or health checks saw it),
// so the backends left may all be full at that moment, though one frees
// a slot within moments. Without it the request would be answered 502
// while a backend that could serve it stood busy.
type UnreachableSelector interface {
	SelectAfterUnreachable(tried []*endpoint.Backend) (*endpoint.Backend, error)
}

// SlotClaimer is a Selector that claims the slot of a backend it picked
// itself, within the bound it picked it by (the gateway's: the backend's
// limit bounded by its peers', endpoint.Backend.AcquireAmong), in one
// compare-and-swap: claimed against the backend's own limit, two picks
// racing for its last slot under the bound both got one. false: the
// slot was taken meanwhile; the claim picks again. A Selector that is
// not one has its picks claimed with endpoint.Backend.Acquire.
type SlotClaimer interface {
	Claim(b *endpoint.Backend) bool
}

// Timeouts bound the phases of one request.
type Timeouts struct {
	FirstByte  time.Duration
	StreamIdle time.Duration
	Total      time.Duration
	// Probe bounds the head of each probe of a follow-up about an id
	// nobody remembers (followup.go): a read of a backend's memory, not
	// generation. 0, or past FirstByte: FirstByte.
	Probe time.Duration
}

// Options configure a Forwarder.
type Options struct {
	Transport     http.RoundTripper
	Timeouts      Timeouts
	Attempts      int
	Budget        *Budget
	Now           func() time.Time
	ExposeBackend bool // send X-Sluice-Backend to clients
	// Hedges bounds hedges in flight (hedge.go); nil: no bound beyond
	// Attempts and Request.HedgeSlot.
	Hedges *HedgeBudget
	// After, when set, replaces time.After for the hedge delay (tests
	// fire it by hand).
	After func(time.Duration) <-chan time.Time
	// AfterFunc, when set, replaces time.AfterFunc for the watchdog that
	// times each attempt's first byte, first token and stream gaps (tests
	// fire it by hand, so a loaded machine never decides a timeout).
	AfterFunc func(time.Duration, func()) Timer
	// Owner runs the goroutines a hedge race leaves behind its request
	// (hedge.go), so shutdown can join them; nil: plain goroutines,
	// joined by nobody.
	Owner Owner
	// RelayBuffers counts the bytes of the large read buffers relayed
	// streams hold (32 KiB once a backend got ahead, more for one event
	// past that): bounded per stream, not by a budget, so counted for the
	// gauge. Kept by the caller across forwarders (a reload builds a new
	// one while streams still run on the old); nil: not counted.
	RelayBuffers *atomic.Int64
	// Workers counts and joins the workers that run streams' first
	// writes (deepcall.go), across the forwarders of every runtime
	// (Transport.Workers); nil: a count of the Forwarder's own, joined by
	// nobody. Close tells them to stop.
	Workers *Workers
}

// Forwarder relays requests to backends. Safe for concurrent use.
type Forwarder struct {
	opt Options
	// dates is the Date of relayed answers, by opt.Now at the head's
	// write: the gateway's clock, not the backend's (isBackendOrigin).
	dates httpdate.Cache
	deep  *deepCalls // runs streams' first writes (deepcall.go)
}

// NewForwarder builds a Forwarder.
func NewForwarder(opt Options) *Forwarder {
	if opt.Attempts < 1 {
		opt.Attempts = 1
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.AfterFunc == nil {
		opt.AfterFunc = func(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
	}
	return &Forwarder{opt: opt, deep: newDeepCalls(opt.Workers)}
}

// Close retires f (a reload replaced its runtime, or shutdown): the
// workers running its streams' first writes stop, idle ones at once,
// busy ones after their write, and Options.Workers joins them. The
// streams still running on f go on; a first write after Close runs on
// its stream's own stack.
func (f *Forwarder) Close() { f.deep.close() }

// Wait returns once none of f's call workers runs, or with ctx's cause
// (wrapped, with the count left) when ctx ends first. Close f first: an
// open forwarder starts workers again. After Close no worker starts (a
// later call runs on its caller's stack), so Wait waits only for the
// calls already on a worker: a stream's first write, bounded by the
// client (server.send_timeout).
func (f *Forwarder) Wait(ctx context.Context) error { return f.deep.own.Wait(ctx) }

// CallWorkers is how many of f's call workers run now, busy or idle.
func (f *Forwarder) CallWorkers() int { return f.deep.own.Live() }

// Request is one inbound inference request, body already read.
type Request struct {
	Path     string // e.g. /v1/chat/completions
	RawQuery string
	Header   http.Header // inbound headers
	Body     *Body
	Peek     openai.Peek
	// ServeModel is the model whose pool serves the request: Peek.Model, or
	// a fallback, in which case the body's "model" is rewritten.
	ServeModel string
	RequestID  string
	// Capture, when set, receives a copy of the relayed body (cache fill).
	Capture *Capture
	// ForwardedFor is the X-Forwarded-For to send upstream: the client
	// chain the gateway believes, ending with the connection's peer.
	ForwardedFor string
	// Work is the request's estimated tokens (prompt and answer), counted
	// on the backend while it is in flight (endpoint.Backend.Work).
	Work int64
	// PromptTokens is the prompt's estimated tokens (bytes / 4; 0:
	// unknown): a stream's first token is judged late against the
	// backend's prefill of that many (endpoint.Backend.FirstTokenOf),
	// and counted in the backend's queued prefill while it waits
	// (endpoint.Backend.StartWaitingOf, PrefillRoom).
	PromptTokens int64
	// KVNeed is the request's KV need (admission.EstimateKVNeed; 0:
	// unknown), counted on the backend while its stream waits for its
	// first token (endpoint.Wait): the tenant ramp's KV
	// room counts this gateway's requests waiting in an engine at their
	// own sizes.
	KVNeed int64
	// Shared marks an answer that may be stored or sent to other clients:
	// the backend is asked for an uncompressed body (Accept-Encoding:
	// identity), so no client is ever handed an encoding it did not ask
	// for. The transport never decompresses on its own.
	Shared bool
	// FirstToken, when positive, bounds a stream's wait for its first
	// token (response headers and then the first chunk) more tightly than
	// Timeouts.FirstByte: the gateway derives it from the request's
	// time-to-first-token objective. 0 = Timeouts.FirstByte alone.
	FirstToken time.Duration
	// HedgeAfter, when positive, sends a stream (Peek.Stream) whose first
	// token has not come this long after it was sent (with or without its
	// response head) to a second backend as well, and relays whichever
	// starts first (hedge.go). 0 = no hedging.
	HedgeAfter time.Duration
	// HedgeSlot grants a hedge the model's spare capacity; nil: hedges
	// need only a backend with a free slot.
	HedgeSlot HedgeSlot
	// AnyShape: the caller takes a 2xx answer in the shape the backend
	// sends (a coalescing flight, which answers each of its clients in
	// its own shape and streams to stream clients as events come).
	// Otherwise an answer in the other shape than Peek.Stream asks is
	// converted whole (shape.go).
	AnyShape bool
	// CacheControl is what a 200 answer tells clients and CDNs (the
	// backend's own Cache-Control is replaced); "" and every other
	// status: no-store.
	CacheControl string
	// CPUOnly: a call served off the engine, by the server's API process
	// (vLLM's tokenizer): it takes a CPU-side slot (endpoint.CPUSlots)
	// instead of an engine slot, and its latency is learnt by nothing
	// (endpoint.Backend.ReleaseCPU). Never hedged.
	CPUOnly bool
	// SideEffects: the backend keeps something of the request beyond its
	// answer (a Responses API request it stores, a chat request with
	// "store": true: OpenAI's stored completions), so a second backend
	// may be asked only when the first provably did not take it: it could
	// not be reached, or it pushed back (429; 503 with Retry-After). A
	// 502, a 503 without Retry-After or a broken answer is relayed (or
	// answered 502) instead: the failed backend may hold a response, and
	// a retry would store a second one (nginx's proxy_next_upstream
	// without non_idempotent). Every other request is a pure function of
	// its body and is retried on those too.
	SideEffects bool
	// Endpoint is the model-addressed endpoint the request is to (not the
	// chat family's nor the Responses API's): its answer's usage is read
	// in that endpoint's shapes (openai.FindEndpointUsage), from the whole
	// answer when it is held (a rerank's usage precedes its results).
	Endpoint openai.ModelEndpoint
	// CountText: count the events of a streamed answer that carry
	// generated text (Result.TextEvents), for a stream whose tokens a
	// limit must settle should no usage arrive. Off, the relay
	// does no per-event work for it.
	CountText bool
	// Metered: the answer's usage settles a token limit, so the backend
	// is asked for an uncompressed body (Accept-Encoding: identity), as
	// for Shared: a compressed answer is relayed as it comes, unread, and
	// its usage (or its stream's text) would go uncounted.
	Metered bool
	// ReleaseBody: the caller's reference to Body (the one ReadBody
	// returned) is the relay's to release as soon as nothing can send the
	// body again: once a stream's head and first event (or, relayed raw,
	// its first bytes) are flushed to the client. From there no retry or
	// hedge follows, and a hedge's or an earlier attempt's request still
	// being written holds the buffer itself (holdUntilWritten), so a held
	// stream stops holding its prompt (RAG and chat-history bodies of
	// 8-200 KiB) for its life. Result.BodyReleased says the relay did: the
	// caller then neither releases the body again nor reads its Bytes or
	// Chunks (Len stays valid). A JSON answer, read whole before it is
	// relayed, is not worth it and keeps the body to the end.
	ReleaseBody bool
	// Budget, with CountText, bounds what the stream may generate: the
	// relay asks it before each counted block of events, and ends the
	// stream there (ErrTokenBudget) when it refuses. nil: no bound.
	Budget TokenBudget
	// Started, when set, is told a stream's first token as the backend
	// judged it (endpoint.Backend.FirstToken's prompt), on the relay's
	// goroutine: the admission ticket, whose tenant ramp grows its base
	// on a prompt start. Not told for a JSON answer, an error status (even
	// one sent as an event stream) or a CPU-side call, which have no first
	// token to judge. A 2xx answer without events (JSON, for a stream
	// request too: a backend that ignored "stream", whisper's
	// transcription) is told as Answered: served, nothing judged.
	Started Starter
}

// Starter is told a stream's first token (Request.Started), or that the
// request was answered whole, without one (a 2xx JSON answer).
type Starter interface {
	FirstToken(prompt bool)
	Answered()
}

// TokenBudget is what a stream may generate, as its token limits grant it
// while it runs (the gateway's: a stream whose request set no max_tokens
// reserved only an estimate at admission).
type TokenBudget interface {
	// Allow reports whether the stream may go on having generated tokens
	// (openai.CompletionTokens of the events counted so far, those about
	// to be relayed included), and the tokens granted it: when it may
	// not, the events within the grant are relayed and the stream ends.
	// It is called from the relay's goroutine only, for every block of
	// events read that carries text.
	Allow(tokens int64) (granted int64, ok bool)
}

// findUsage reads the usage in an answer's end (or whole) in the shapes
// the request's endpoint reports it in. The chat family's path stays
// FindUsage's, one comparison away.
func (in *Request) findUsage(b []byte) (openai.Usage, bool) {
	if in.Endpoint != openai.EndpointNone {
		return openai.FindEndpointUsage(b)
	}
	return openai.FindUsage(b)
}

// boundUsage caps the completion count of res's usage at what the request
// let the backend generate: max_tokens (max_completion_tokens,
// max_output_tokens) for each of its choices, when it set one. A count
// past that bound is not believable, as one past openai.MaxTokensLimit is
// not (FindUsage): a backend reporting 16 million tokens for a request of
// max_tokens 100 would put its token limits minutes in debt. The bound is
// charged, not the estimate: it is the most the answer can have cost, and
// the backend's prompt count, which the request does not bound, stays
// believed. Every reader of the usage (the settle, sluice_tokens_total,
// the access line, the backend's service rate) sees the capped count.
func (in *Request) boundUsage(res *Result) {
	if !res.UsageKnown || in.Endpoint != openai.EndpointNone || in.Peek.MaxTokens <= 0 {
		return
	}
	res.Usage.CompletionTokens = min(res.Usage.CompletionTokens, in.Peek.MaxTokens*in.Peek.Completions())
}

// Result says how a request ended.
type Result struct {
	Backend  *endpoint.Backend // the backend that answered (or last tried)
	Status   int               // status sent to the client; 0 if nothing was sent
	Attempts int
	Retries  int
	// TTFB is the time from Forward's start to the first response byte the
	// client got (for streams, the first event: time to first token).
	TTFB       time.Duration
	Usage      openai.Usage
	UsageKnown bool
	// TextEvents is the number of events relayed that carried generated
	// text, TextBytes the bytes of that text (openai.CountText), counted
	// only for Request.CountText.
	TextEvents, TextBytes int
	// Err is why the request failed. When Written is false the caller must
	// answer the client with it; when true, the response already started.
	Err     error
	Written bool
	// RetryAfter is the hint to pass on when Err is back-pressure.
	RetryAfter time.Duration
	// Hedge says whether a hedge was due, sent, and won (hedge.go).
	Hedge HedgeOutcome
	// ResponseID is the id of the Responses API response relayed (its
	// stream's first event carrying the response, or its JSON's "id"); ""
	// for any other answer.
	ResponseID string
	// BodyReleased: the relay released the request's body
	// (Request.ReleaseBody).
	BodyReleased bool
	// ForeignError notes the error answer (4xx/5xx) the backend sent
	// that was not JSON and that the client got as an OpenAI error
	// object instead: its Content-Type and first bytes, for the log
	// only (wrapForeignError); "" for any other answer.
	ForeignError string
	// Held is how long the answering attempt held its backend: from its
	// send to the end of its answer (the backend's service time, without
	// the attempts before it or a wait for a slot); 0 when none answered.
	Held time.Duration
	// ended is the clock read at the answer's end by a relay that read one
	// (relayAnswer's, for its backend's release), which Held reuses.
	ended time.Time
}

// Forward runs the attempts for one request and relays the response to w:
// each attempt claims a backend, sends, and then either relays the answer
// or records why another backend should be tried (attempt.go).
func (f *Forwarder) Forward(ctx context.Context, w http.ResponseWriter, in *Request, sel Selector) (res Result) {
	start := f.opt.Now()
	deadline := start.Add(f.opt.Timeouts.Total)
	if f.opt.Budget != nil {
		f.opt.Budget.Deposit()
	}
	f.opt.Hedges.begin()
	defer f.opt.Hedges.end()

	var triedBuf [4]*endpoint.Backend
	tried := triedBuf[:0]
	var busy pushedBack // the last 429/503, relayed if no other backend answers
	defer busy.drop()

	for attempt := 0; attempt < f.opt.Attempts; attempt++ {
		// One clock read per attempt serves its checks, its breaker call
		// and its start (a first attempt's is the request's start).
		now := start
		if attempt > 0 {
			var ok bool
			if now, ok = f.mayRetry(deadline, &res); !ok {
				break
			}
		}
		c, step := f.claim(in, sel, &tried, now, busy.resp != nil, &res)
		if step != stepGo && attempt > 0 {
			f.unretry(&res) // nothing was sent: no retry made
		}
		if step == stepStop {
			break
		}
		if step == stepNext {
			continue
		}
		res.Attempts++
		res.Backend = c.b
		s := f.send(ctx, in, sel, &tried, c, now, deadline, &res)
		// The backend's own latency, from this attempt's start: earlier
		// attempts and a hedge's wait are not its doing.
		ttfb := s.head.Sub(s.at)
		if s.err != nil {
			if f.failed(ctx, s, ttfb, in, &res) {
				continue
			}
			return res
		}
		if f.declined(s, ttfb, attempt+1 < f.opt.Attempts, in, &busy, &res) {
			if busy.final {
				break
			}
			continue
		}
		busy.drop()
		res.Err = nil
		// The clock read as the head came (send's) serves the head's
		// bookkeeping and the relay's first gap; a hedge race's winner
		// may have waited since its head, so it reads the clock afresh.
		head := s.head
		if in.HedgeAfter > 0 && in.Peek.Stream {
			head = f.opt.Now()
		}
		f.matchWaiting(&s.c, s.resp, s.at, head)
		// The relay measures from the attempt's start, so the backend
		// learns its own time to first token; the client's includes the
		// attempts before it.
		retry := f.relay(ctx, s.actx, w, s.c, s.resp, s.wd, in, s.at, head, &res)
		res.TTFB += s.at.Sub(start)
		s.cancel(nil)
		if retry && !in.SideEffects {
			continue // nothing reached the client: another backend may answer
		}
		if retry {
			return res // the backend may have kept the request: no second one
		}
		end := res.ended // the relay's last clock read, when it kept one
		if end.IsZero() {
			end = f.opt.Now()
		}
		res.Held = end.Sub(s.at)
		return res
	}
	if busy.resp != nil {
		// Every backend pushed back: pass the honest answer on, with its
		// Retry-After, rather than inventing another status.
		res.Err = nil
		res.Backend = busy.b
		f.relayBusy(w, busy.b, busy.resp, in, start, &res)
	}
	return res
}

// attemptContext is an attempt's context. A first attempt that may be
// hedged may outlive the request (a loser running on to its own first
// token or timeout, hedge.go): its context is then tied to the request's
// by unlink-able propagation, and unlink (nil otherwise) cuts the tie.
func (f *Forwarder) attemptContext(ctx context.Context, hedged bool) (context.Context, context.CancelCauseFunc, func() bool) {
	if !hedged {
		actx, cancel := context.WithCancelCause(ctx)
		return actx, cancel, nil
	}
	actx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	unlink := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	return actx, cancel, unlink
}

// outbound builds the upstream request: same path and body, the headers
// of upstreamHeader (hop-by-hop and client-only ones dropped, the
// backend's credentials instead of the client's). Its URL, body reader and
// write hold share one allocation (upstream), which roundTrip is given.
func (f *Forwarder) outbound(ctx context.Context, b *endpoint.Backend, in *Request) (*http.Request, *upstream) {
	up := &upstream{}
	t := b.Target()
	spec := b.Spec()
	up.url = url.URL{Scheme: t.Scheme, Host: t.Host, Path: t.Path + in.Path, RawQuery: upstreamQuery(in.RawQuery, spec)}
	var getBody func() (io.ReadCloser, error)
	body := in.Body.Bytes()
	size := int64(len(body))
	var segs [][]byte // the body as slices of the pooled blocks, when not body
	if len(body) == 0 && in.Body.Len() > 0 {
		segs = in.Body.Chunks() // a form kept in blocks (ReadBodyChunks)
	}
	want := spec.UpstreamModel
	if want == "" {
		want = in.ServeModel
	}
	if want == "" && in.Peek.ModelDefaulted {
		want = in.Peek.Model
	}
	if want != "" && (want != in.Peek.Model || in.Peek.ModelDefaulted) {
		if rewritten, err := replaceModel(in, want); err == nil {
			body, segs = nil, rewritten
		}
	}
	var reader io.Reader = &up.body
	switch {
	case segs == nil:
		// A NopCloser over a bytes.Reader is a body net/http knows is in
		// memory, so headers and body leave in one write instead of two.
		// The pooled buffer is held until the transport reports the
		// request written; without GetBody the transport never re-reads it
		// later (our own retries build a new request).
		up.body.Reset(body)
		up.hold.readers = up
		ctx = up.hold.hold(ctx, in.Body)
	case openai.ChunksLen(segs) <= maxRewriteCopy:
		// A small body in slices (rewritten, or a small form kept in
		// blocks) is copied whole: one write, as above.
		// The copy is let go once the head came (rewritecopy.go).
		rewritten := openai.JoinChunks(segs)
		size = int64(len(rewritten))
		ctx = up.copy.hold(ctx, up, rewritten)
		getBody = up.copy.getBody
	default:
		// A large body is sent from the pooled blocks it is in (a form),
		// a rewritten one as a splice over them: no copy of it, which
		// would be outside the body budget (25 MiB per attempt for a
		// form). The blocks are held until written, as above.
		size = int64(openai.ChunksLen(segs))
		up.segs.Reset(segs)
		reader = &up.segs
		up.hold.readers = up
		ctx = up.hold.hold(ctx, in.Body)
	}
	h := upstreamHeader(in, spec)
	if !in.Endpoint.Multipart() && !jsonContentType(headerGet(h, "Content-Type")) {
		// The body was parsed and checked as JSON whatever the client
		// called it (curl -d says x-www-form-urlencoded, some clients
		// text/plain or nothing): the backend is told so. FastAPI (vLLM,
		// SGLang) reads a body labelled otherwise as bytes and refuses
		// it; LiteLLM re-sends what it parsed as JSON alike.
		h["Content-Type"] = jsonType
	}
	// Answers the gateway reads are asked for identity, whatever the
	// client accepts: a shared (coalesced) or captured answer, a metered
	// one (its usage settles a token limit), and (upstreamHeader) any
	// from a backend with an api_key, which may echo the key and is
	// scrubbed (scrubKey, scrubAnswer) — so the scrub need not decompress
	// (it does for gzip and deflate, from a backend that compresses
	// anyway, and withholds or refuses other codings). And a stream: its
	// events are checked, counted and judged as they pass (relayStream:
	// a keep-alive or an in-band error is no first token, a malformed
	// event or a break is the backend's failure), none of which a
	// compressed stream allows (relayRaw passes its bytes unchecked and
	// took the first for the first token); a token's event compresses to
	// little when every event is flushed.
	if in.Shared || in.Capture != nil || in.Metered || in.Peek.Stream {
		h["Accept-Encoding"] = identityEncoding
	}
	req := &http.Request{
		Method:        http.MethodPost,
		URL:           &up.url,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(reader),
		ContentLength: size,
		Host:          t.Host,
		GetBody:       getBody,
	}
	return req.WithContext(ctx), up
}

// maxRewriteCopy is the largest body in slices (rewritten, or a form kept
// in blocks) sent as a copy (one write with the headers); a larger one is
// sent from the slices, over the pooled body.
const maxRewriteCopy = 64 << 10

// replaceModel is the request's body with its model set to model, in the
// body's own kind: a JSON body's "model" member, an audio request's
// "model" form part; a splice over the body's own bytes, no copy. The
// error (the body was parsed before, so there is none in practice)
// leaves the body as sent.
func replaceModel(in *Request, model string) ([][]byte, error) {
	if openai.EndpointOf(in.Path).Multipart() {
		return openai.ReplaceFormModelChunks(in.Header.Get("Content-Type"), in.Body.Chunks(), model)
	}
	return openai.ReplaceModelSplice(in.Body.Bytes(), model)
}

// upstream is what an upstream request points to, allocated together.
type upstream struct {
	url  url.URL
	body bytes.Reader
	segs openai.ChunkReader
	hold writeHold
	copy copyHold
}

func drain(body io.ReadCloser) {
	io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	body.Close()
}
