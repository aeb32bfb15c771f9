package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/batchapi"
	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// jobCall marks a request that runs a queued job, entered by the
// in-process executor (runJob) or asserted by a `sluice worker`
// (workerJob): it runs as the job's tenant and class, is charged to that
// tenant's rate limits, and is spare work — it takes a free slot at once
// or is refused (admitStage), so queued work never waits in front of live
// requests.
type jobCall struct {
	id identity
	// throttled is set when the tenant's rate limit refused the job: it
	// goes back to the queue for the advised time rather than retrying.
	throttled bool
	// revoked is set when a reload left the job's tenant without a key
	// (lostTenants): refused, it ends unrun (jobs.ErrRevoked).
	revoked bool
}

// spareGatePoll is how often a waiting worker looks for spare capacity.
const spareGatePoll = 10 * time.Millisecond

// busyRetryFor bounds how long Execute keeps trying a job whose slot was
// taken between the gate's look and the admission, before it hands the
// job back to the queue as busy.
const busyRetryFor = 10 * time.Second

// JobGate is the admission controller's view for job workers: a pool has
// spare capacity when nothing waits in its queue and a slot is free.
func (g *Gateway) JobGate() jobs.Gate { return spareGate{g} }

type spareGate struct{ g *Gateway }

func (s spareGate) Wait(ctx context.Context, model string) error {
	if s.g.spare(model) {
		return nil
	}
	t := time.NewTicker(spareGatePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if s.g.spare(model) {
				return nil
			}
		}
	}
}

// spare reports whether model's pool (any pool for "") can take a job now.
// An unknown model counts as spare: the job then fails with a 404 answer
// instead of waiting forever.
func (g *Gateway) spare(model string) bool {
	rt := g.rt.Load()
	now := g.now()
	free := func(p *Pool) bool {
		if !p.Ready(now) {
			return false
		}
		return p.queue == nil || p.queue.Spare() > 0
	}
	if model == "" {
		for _, p := range rt.Pools {
			if free(p) {
				return true
			}
		}
		return false
	}
	p := rt.Pools[model]
	return p == nil || free(p)
}

// JobExecutor runs jobs through the same chain as live requests (cache,
// admission, routing, retries), in the job's class.
func (g *Gateway) JobExecutor() jobs.Executor { return jobExecutor{g} }

type jobExecutor struct{ g *Gateway }

func (e jobExecutor) Execute(ctx context.Context, j *jobs.Job) (jobs.Result, error) {
	deadline := e.g.now().Add(busyRetryFor)
	gate := spareGate{e.g}
	for {
		res, busy, err := e.g.runJob(ctx, j)
		if !busy || res.RetryAfter > 0 || !e.g.now().Before(deadline) {
			return res, err
		}
		if err := gate.Wait(ctx, j.Model); err != nil {
			return jobs.Result{}, err
		}
	}
}

// runJob is the job entry: the job's request enters the inference chain
// directly (not through ServeHTTP), as the job's tenant and class, and its
// answer is written to a sink. busy means it was refused for want of
// capacity (429/503 from admission or the pool).
func (g *Gateway) runJob(parent context.Context, j *jobs.Job) (res jobs.Result, busy bool, err error) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	jc := &jobCall{id: identity{tenant: j.Tenant, weight: 1, class: classOf(j.Class), preempt: func() { cancel(errPreempted) }}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.Path, bytes.NewReader(j.Body))
	if err != nil {
		return res, false, fmt.Errorf("job %s: %w", j.ID, err)
	}
	req.ContentLength = int64(len(j.Body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", j.ID+"-"+strconv.Itoa(j.Attempts))
	w := &answerSink{h: http.Header{}, max: g.jobAnswerMax}
	g.handle(w, req, jc, openai.EndpointNone, g.now(), new(answerValues), nil, nil) // no connection: nothing to memo, no exchange kept
	if err := parent.Err(); err != nil {
		return res, false, err
	}
	if w.over {
		return res, false, fmt.Errorf("job %s: %w", j.ID, errJobAnswerTooLarge{w.max})
	}
	if context.Cause(ctx) == errPreempted {
		// Live traffic took the slot back: run it again later.
		return jobs.Result{StatusCode: http.StatusServiceUnavailable, Body: preemptedBody}, true, nil
	}
	if jc.revoked {
		return res, false, fmt.Errorf("job %s: %w", j.ID, jobs.ErrRevoked)
	}
	if w.status == 0 {
		return res, false, fmt.Errorf("job %s: no answer", j.ID)
	}
	body := w.buf.Bytes()
	if strings.HasPrefix(w.h.Get("Content-Type"), "text/event-stream") && w.status == http.StatusOK {
		// Results are stored whole: a streamed answer is kept as the
		// JSON object a plain request would have got.
		accumulate := openai.AccumulateStream
		if j.Path == pathResponses {
			accumulate = openai.ResponseFromStream
		}
		if body, err = accumulate(body); err != nil {
			return res, false, fmt.Errorf("job %s: %w", j.ID, err)
		}
	}
	if !json.Valid(body) {
		return res, false, fmt.Errorf("job %s: the backend answered %d with a body that is not JSON", j.ID, w.status)
	}
	res = jobs.Result{StatusCode: w.status, RequestID: w.h.Get("X-Request-Id"), Body: json.RawMessage(bytes.Clone(body))}
	switch {
	case jc.throttled:
		// The tenant's limit, not the pool: wait as long as it advises.
		res.RetryAfter = max(proxy.ParseRetryAfter(w.h.Get("Retry-After"), g.now()), time.Second)
	case w.status == http.StatusBadGateway:
		// The chain's own 502 says when a backend is back
		// (failedPoolRetry): the worker runs the job again no sooner.
		res.RetryAfter = proxy.ParseRetryAfter(w.h.Get("Retry-After"), g.now())
	}
	return res, refusedForCapacity(w.status), nil
}

// refusedForCapacity tells "no room now" (retry later without counting an
// attempt) from an answer: 429 and 503 come from the gateway's admission
// or a busy backend.
func refusedForCapacity(status int) bool {
	return status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests
}

// answerSink is where a job's answer goes: the chain's stages and the
// proxy write an http.ResponseWriter, and the sink keeps status, headers
// and body for the job's result, at most max bytes of body: a write past
// it fails, as a client gone does (the proxy stops reading the backend),
// and the run fails (over). Without it a backend answering without end
// grew the gateway's memory for as long as the job's run lasted.
type answerSink struct {
	h      http.Header
	status int
	buf    bytes.Buffer
	max    int64
	over   bool
}

// errJobAnswerTooLarge is a job's answer cut at the sink's bound; it is
// jobs.ErrAnswerTooLarge, which the worker counts.
type errJobAnswerTooLarge struct{ max int64 }

func (e errJobAnswerTooLarge) Error() string {
	return "the answer is over " + strconv.FormatInt(e.max, 10) + " bytes, the most a job's answer may hold"
}

func (e errJobAnswerTooLarge) Unwrap() error { return jobs.ErrAnswerTooLarge }

func (w *answerSink) Header() http.Header { return w.h }

// bytesSent is the answer's body bytes held for the job (bytesCounter).
func (w *answerSink) bytesSent() int64 { return int64(w.buf.Len()) }
func (w *answerSink) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *answerSink) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.over || int64(w.buf.Len())+int64(len(p)) > w.max {
		w.over = true
		return 0, errJobAnswerTooLarge{w.max}
	}
	return w.buf.Write(p)
}
func (w *answerSink) Flush() {}

// jobClass is the admission class async work submitted by id runs in.
func jobClass(id identity) string {
	if id.class == admission.Batch {
		return "batch"
	}
	return "interactive"
}

// acceptAsync queues the request as a job and answers 202 with its id
// (or the job an earlier submission with the same Idempotency-Key made).
func (g *Gateway) acceptAsync(w http.ResponseWriter, r *http.Request, body []byte, peek openai.Peek, id identity) int {
	jobsAPI := g.jobs.Load()
	if jobsAPI == nil {
		e := errQueueDisabled
		if g.queueOn {
			e = errQueueDown
		}
		writeError(w, e)
		return e.Status
	}
	if peek.Stream {
		// A job's answer is stored whole and fetched later; there is
		// nobody to stream to.
		e := openai.BadRequest("async_stream", "Prefer: respond-async cannot be combined with \"stream\": true")
		e.Param = "stream"
		writeError(w, e)
		return e.Status
	}
	spec := jobs.Spec{Tenant: id.tenant, Path: r.URL.Path, Model: peek.Model, Body: bytes.Clone(body),
		Class: jobClass(id), IdempotencyKey: r.Header.Get("Idempotency-Key")}
	if len(spec.IdempotencyKey) > 255 {
		e := openai.BadRequest("invalid_idempotency_key", "Idempotency-Key must be at most 255 characters")
		e.Param = "Idempotency-Key"
		writeError(w, e)
		return e.Status
	}
	if raw := r.Header.Get(batchapi.WebhookHeader); raw != "" {
		hook, err := g.checkWebhook(raw)
		if err != nil {
			e := apiError(err, peek.Model)
			writeError(w, e)
			return e.Status
		}
		spec.Webhook = hook
	}
	rw := &statusWriter{ResponseWriter: w}
	jobsAPI.Accept(rw, r, spec)
	return rw.status
}

// checkWebhook validates an X-Sluice-Webhook at submit time: a well-formed
// http(s) URL, not an internal address literal unless they are allowed
// (names are checked again on the address dialled, when it is sent), and
// only on a gateway that signs webhooks.
func (g *Gateway) checkWebhook(raw string) (string, error) {
	hook, err := batchapi.ParseWebhook(raw)
	if err != nil {
		return "", err
	}
	if !g.webhooksSigned {
		return "", &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "webhooks_unavailable",
			Param: batchapi.WebhookHeader, Message: "this gateway sends no webhooks: it has no queue.webhook_secret to sign them with"}
	}
	if err := jobs.CheckWebhookURL(hook, g.privateHooks); err != nil {
		msg := "webhooks to loopback, private, link-local or metadata addresses are not allowed on this gateway"
		if errors.Is(err, jobs.ErrWebhookNumericHost) {
			msg = batchapi.WebhookHeader + ": a host that ends in a number must be a dotted-quad IPv4 address (2130706433, 0x7f000001, 0177.0.0.1 and 127.1 are not)"
		}
		return "", &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_webhook",
			Param: batchapi.WebhookHeader, Message: msg}
	}
	return hook, nil
}

// statusWriter remembers the status written, for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// serveJobsAPI serves /v1/files, /v1/batches and /v1/jobs for the
// authenticated tenant.
func (g *Gateway) serveJobsAPI(w http.ResponseWriter, r *http.Request) {
	rt := g.rt.Load()
	// The id ties an unexpected error's generic answer to its log line.
	w.Header().Set("X-Request-Id", requestID(r))
	id, authErr := rt.tenants.identify(r, rt.tenants.realIP.client(r).key)
	if authErr != nil {
		if cause := g.refuseAuth(w, authErr); cause != nil {
			g.log.Info("jobs API: credential refused", "path", telemetry.Clip(r.URL.Path), "cause", telemetry.Clip(cause.Error()))
		}
		writeError(w, apiError(authErr, ""))
		return
	}
	if codedBody(r.Header["Content-Encoding"]) { // as for inference bodies (parseStage)
		w.Header().Set("Accept-Encoding", "identity")
		writeError(w, errContentEncoding)
		return
	}
	h := g.jobs.Load()
	if h == nil {
		writeError(w, errQueueDown)
		return
	}
	h.Serve(w, r, id.tenant)
}

// errPreempted cancels a job whose slot live traffic needs.
var errPreempted = errors.New("preempted by live traffic")

var preemptedBody = json.RawMessage(`{"error":{"message":"preempted by live traffic; the job runs again later","type":"server_error","param":null,"code":"preempted"}}`)

var (
	errQueueDisabled = &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "async_unavailable",
		Message: "Prefer: respond-async needs the job queue, which is disabled on this gateway (queue.enabled)"}
	errQueueDown = &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "queue_unavailable",
		Message: "the job queue is not connected yet; retry shortly", RetryAfter: 5 * time.Second}
)

// serveSpare answers GET /spare?model=M with 200 when the pool can take a
// job now and 429 when it cannot: the admission controller's view for
// separate worker processes (jobs.HTTPGate). No model: any pool. A
// gateway shutting down answers 503 shutting_down (DrainWorkers): no room
// for a while, which the worker backs off from.
func (g *Gateway) serveSpare(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if g.workers.isDraining() {
		writeError(w, errWorkerDraining)
		return
	}
	if g.spare(r.URL.Query().Get("model")) {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusTooManyRequests)
}
