package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NewTransport returns the transport Run uses when Config.Client is nil:
// keep-alive pools large enough that a burst never waits for a connection,
// no transparent compression (it would cost CPU and hide the server's own
// encoding), no environment proxy, and HTTP/1.1 only, so load spreads over
// many connections like real clients instead of multiplexing onto one.
func NewTransport() *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		MaxIdleConns:        0, // no global limit; the per-host one applies
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableCompression:  true,
		// Default (4 KiB) connection buffers: large bodies bypass them
		// anyway, and bigger ones cost memory clearing on every dial.
	}
}

// NewClient wraps NewTransport in a client that does not follow redirects
// (a redirect is reported as its status) and has no overall timeout (Run
// bounds each request with Config.Timeout through its context).
func NewClient() *http.Client {
	return &http.Client{
		Transport:     NewTransport(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// DiscoverModel returns the first model id the target lists at
// GET {target}/v1/models (the OpenAI list shape), for callers that do not
// know which model the endpoint serves.
func DiscoverModel(ctx context.Context, client *http.Client, target string) (string, error) {
	if client == nil {
		client = NewClient()
		defer client.CloseIdleConnections()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(target, "/")+"/v1/models", nil)
	if err != nil {
		return "", fmt.Errorf("bench: list models: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("bench: list models: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("bench: list models: status %d", resp.StatusCode)
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&list); err != nil {
		return "", fmt.Errorf("bench: list models: %w", err)
	}
	if len(list.Data) == 0 || list.Data[0].ID == "" {
		return "", errors.New("bench: list models: the target lists none")
	}
	return list.Data[0].ID, nil
}

// ErrorKind classifies a failed request; the empty kind means success.
type ErrorKind string

const (
	// KindConnect: no response headers: the dial failed, or the connection
	// was refused, reset or closed before the response began.
	KindConnect ErrorKind = "connect"
	// KindTimeout: Config.Timeout passed before the response ended.
	KindTimeout ErrorKind = "timeout"
	// KindStatus: the response status was not 2xx.
	KindStatus ErrorKind = "status"
	// KindRead: the response broke after its headers (a mid-stream
	// disconnect) or the stream carried an error event.
	KindRead ErrorKind = "read"
	// KindTruncated: a stream ended cleanly but without "data: [DONE]".
	KindTruncated ErrorKind = "truncated"
	// KindCanceled: the run ended (ctx cancelled or drain timeout) first.
	KindCanceled ErrorKind = "canceled"
	// KindOther: anything else, such as an unbuildable request.
	KindOther ErrorKind = "other"
)

// Record is what happened to one arrival. Durations are measured from the
// moment the request was handed to the HTTP client.
type Record struct {
	Index   int           `json:"index"`
	Tenant  int           `json:"tenant"`
	Planned time.Duration `json:"planned"` // Arrival.At
	Lag     time.Duration `json:"lag"`     // how late it fired
	// Dropped means MaxInFlight was reached: the request was never sent.
	Dropped bool      `json:"dropped,omitempty"`
	Status  int       `json:"status"`
	Kind    ErrorKind `json:"kind,omitempty"`
	// Code is the OpenAI error "code" of a non-2xx answer's body (a
	// gateway's refusal says why in it: tenant_over_share, deadline, ...),
	// "" when it has none.
	Code string `json:"error_code,omitempty"`
	// Message is the OpenAI error "message" of a non-2xx answer's body,
	// its first maxErrorMessage bytes: where one code has several causes
	// (Sluice's pool_saturated) the message is what tells them apart.
	Message string `json:"error_message,omitempty"`
	// TTFT is the time to the first content event of a stream, or to the
	// end of the body for a non-streaming request.
	TTFT time.Duration `json:"ttft"`
	E2E  time.Duration `json:"e2e"`
	// ITLCount and ITLMax describe the gaps between content events.
	ITLCount int           `json:"itl_count"`
	ITLMax   time.Duration `json:"itl_max"`
	// Tokens come from the response's usage object; without one, prompt
	// tokens are the planned count and completion tokens the content events.
	PromptTokens     int  `json:"prompt_tokens"`
	CompletionTokens int  `json:"completion_tokens"`
	UsageReported    bool `json:"usage_reported"`
	Done             bool `json:"done"` // the stream ended with [DONE]
	// Headers holds the values of Config.HeadersOfInterest, in that order
	// ("" when absent).
	Headers []string `json:"headers,omitempty"`
}

// OK reports a request that was sent and fully served.
func (r *Record) OK() bool { return !r.Dropped && r.Kind == "" && r.Status >= 200 && r.Status < 300 }

// Refused reports an explicit "come back later": 429 or 503.
func (r *Record) Refused() bool {
	return r.Status == http.StatusTooManyRequests || r.Status == http.StatusServiceUnavailable
}

// exchange is one request/response; the runner fills in what it needs.
type exchange struct {
	client    *http.Client
	clock     Clock
	req       *http.Request // context already attached
	stream    bool
	plannedIn int
	interest  []string
	hist      *histogram
	bufs      *sync.Pool      // of *[]byte read buffers
	runCtx    context.Context // done when the run is over
}

// do runs the exchange for an arrival due at due and fills rec; Lag is the
// time from due to the request actually starting.
func (x *exchange) do(rec *Record, due time.Time) {
	start := x.clock.Now()
	rec.Lag = start.Sub(due)
	since := func() time.Duration { return x.clock.Now().Sub(start) }
	resp, err := x.client.Do(x.req)
	if err != nil {
		rec.E2E = since()
		rec.Kind = x.classify(err, KindConnect)
		return
	}
	defer resp.Body.Close()
	rec.Status = resp.StatusCode
	if len(x.interest) > 0 {
		rec.Headers = make([]string, len(x.interest))
		for i, h := range x.interest {
			rec.Headers[i] = resp.Header.Get(h)
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Read (bounded) for its code, and drain so the connection goes
		// back to the pool.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		rec.Code, rec.Message = errorFields(body)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 256<<10))
		rec.E2E = since()
		rec.Kind = KindStatus
		return
	}
	bufp := x.bufs.Get().(*[]byte)
	defer x.bufs.Put(bufp)
	if !x.stream {
		x.readWhole(resp.Body, *bufp, rec, since)
		return
	}
	st := streamStats{hist: x.hist}
	var split lineSplitter
	var now time.Duration
	onLine := func(l []byte) { st.line(l, now) }
	for {
		n, err := resp.Body.Read(*bufp)
		now = since()
		split.feed((*bufp)[:n], onLine)
		if err == io.EOF {
			split.flush(onLine)
			break
		}
		if err != nil {
			rec.Kind = x.classify(err, KindRead)
			break
		}
	}
	rec.E2E = since()
	rec.TTFT, rec.ITLCount, rec.ITLMax, rec.Done = st.first, st.gaps, st.maxGap, st.done
	rec.PromptTokens, rec.CompletionTokens = x.plannedIn, st.events
	if st.hasUsage {
		rec.PromptTokens, rec.CompletionTokens, rec.UsageReported = st.usage.PromptTokens, st.usage.CompletionTokens, true
	}
	switch {
	case rec.Kind != "":
	case st.errorEvent:
		rec.Kind = KindRead
	case !st.done:
		rec.Kind = KindTruncated
	}
}

func (x *exchange) readWhole(body io.Reader, buf []byte, rec *Record, since func() time.Duration) {
	var all bytes.Buffer
	for {
		n, err := body.Read(buf)
		all.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			rec.Kind = x.classify(err, KindRead)
			break
		}
	}
	rec.E2E = since()
	rec.TTFT = rec.E2E
	rec.PromptTokens = x.plannedIn
	if u, ok := findUsage(all.Bytes()); ok {
		rec.PromptTokens, rec.CompletionTokens, rec.UsageReported = u.PromptTokens, u.CompletionTokens, true
	}
}

// classify names err; fallback is the kind for errors that are neither
// timeouts, cancellations nor dial failures.
func (x *exchange) classify(err error, fallback ErrorKind) ErrorKind {
	switch {
	case x.runCtx.Err() != nil:
		return KindCanceled
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(context.Cause(x.req.Context()), context.DeadlineExceeded): // Timeout on a test's clock
		return KindTimeout
	case errors.Is(err, context.Canceled):
		return KindCanceled
	}
	var op *net.OpError
	if (errors.As(err, &op) && op.Op == "dial") || errors.Is(err, syscall.ECONNREFUSED) {
		return KindConnect
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return KindTimeout
	}
	return fallback
}

// maxErrorBody is the most of an error answer's body read for its code:
// an OpenAI error object is far smaller.
const maxErrorBody = 16 << 10

// errorCode is the "code" of an OpenAI error object in body when it is a
// string of at most 64 bytes, "" otherwise (no JSON, no code, a null or
// numeric one, or a code too long to be a label).
func errorCode(body []byte) string {
	code, _ := errorFields(body)
	return code
}

// maxErrorMessage is the most of an error's message a Record keeps.
const maxErrorMessage = 200

// errorFields is errorCode's code and the error's "message" string, cut
// to maxErrorMessage bytes ("" when it is not a string).
func errorFields(body []byte) (code, message string) {
	var e struct {
		Error struct {
			Code    json.RawMessage `json:"code"`
			Message json.RawMessage `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return "", ""
	}
	if json.Unmarshal(e.Error.Code, &code) != nil || len(code) > 64 {
		code = ""
	}
	if json.Unmarshal(e.Error.Message, &message) != nil {
		message = ""
	}
	if len(message) > maxErrorMessage {
		message = message[:maxErrorMessage]
	}
	return code, message
}
