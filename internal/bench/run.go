package bench

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one run. Only Target and Arrivals are required; the
// default of every other field is given with it.
type Config struct {
	// Target is the base URL, e.g. "http://127.0.0.1:8080".
	Target string
	// Path is appended to Target. Default "/v1/chat/completions".
	Path string
	// Model is the request's "model". Default "default".
	Model string
	// Stream asks for SSE responses, which is what makes TTFT and ITL
	// measurable. The zero value sends non-streaming requests, for which
	// TTFT equals the end-to-end latency; the CLI defaults it to true.
	Stream bool
	// Arrivals is the plan, ordered by At (it is sorted if not).
	Arrivals []Arrival
	// Duration stops firing arrivals due at or after it. 0 = fire them all.
	Duration time.Duration
	// MaxRequests fires only the first MaxRequests arrivals. 0 = all.
	MaxRequests int
	// MaxInFlight caps concurrent requests; arrivals beyond it are dropped
	// and counted, never delayed. Default 10000.
	MaxInFlight int
	// Timeout bounds each request, streaming included, on Clock. Default 5m.
	Timeout time.Duration
	// DrainTimeout bounds the wait for in-flight requests after the last
	// arrival fired; those still running are then cancelled and recorded
	// as KindCanceled. Default: Timeout plus one second, so requests meet
	// their own timeout (KindTimeout) first.
	DrainTimeout time.Duration
	// SLOTTFT and SLOE2E define goodput: a request counts when it succeeded
	// with TTFT <= SLOTTFT and E2E <= SLOE2E. 0 disables that bound.
	SLOTTFT, SLOE2E time.Duration
	// Tenants, when not empty, are picked by Arrival.Tenant (which must be
	// in range) and reported separately.
	Tenants []Tenant
	// Headers are sent with every request (tenant headers override them).
	Headers http.Header
	// HeadersOfInterest are response headers recorded per request and
	// counted by value in Result.Headers. Default Retry-After and
	// X-Sluice-Backend; Retry-After is always added, as Result needs it.
	HeadersOfInterest []string
	// BlockTokens is the prompt block size HashIDs refer to. Default 512.
	BlockTokens int
	// PrebuildBytes: bodies are built before the run when they total at most
	// this many bytes, else each is built by its own request goroutine
	// (never by the scheduler). Default 256 MiB; negative never prebuilds.
	PrebuildBytes int64
	// Progress receives a status line every ProgressEvery. nil = silent.
	Progress io.Writer
	// ProgressFunc, when set, is called every ProgressEvery with the
	// counts so far instead of writing to Progress (the demo formats its
	// own line).
	ProgressFunc func(Progress)
	// ProgressEvery is the interval of progress reports. Default 1s.
	ProgressEvery time.Duration
	// Client sends the requests. Default NewClient().
	Client *http.Client
	// Rand salts the prompts, so runs with the same seed send the same
	// bytes. Default: a fixed seed.
	Rand *rand.Rand
	// Clock reads and waits for time. Default: the real clock.
	Clock Clock
	// Label names the run in reports (e.g. "direct", "sluice").
	Label string
}

// Tenant is one client identity of a multi-tenant run.
type Tenant struct {
	Name string
	// APIKey, when set, is sent as "Authorization: Bearer APIKey".
	APIKey string
	// Headers are extra request headers, e.g. a priority class.
	Headers http.Header
	// Share weights the tenant's part of the arrivals in AssignTenants.
	Share float64
}

// Clock is the time source of a run.
type Clock interface {
	Now() time.Time
	// Wait blocks until the clock reaches t (nil) or ctx is done (ctx.Err()).
	Wait(ctx context.Context, t time.Time) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Wait(ctx context.Context, t time.Time) error { return sleepCtx(ctx, time.Until(t)) }

// sleepCtx waits d, or until ctx ends: ctx's error if it has ended
// (already, when d is not positive), else nil.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// withClockTimeout is context.WithTimeout on clock: a test's clock, not the
// machine's pace, decides when a request has run too long. The context's
// cause is then context.DeadlineExceeded, as with a real deadline.
func withClockTimeout(parent context.Context, clock Clock, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := clock.(realClock); ok {
		return context.WithTimeout(parent, d)
	}
	ctx, cancel := context.WithCancelCause(parent)
	deadline := clock.Now().Add(d)
	done := make(chan struct{})
	go func() { // ends with ctx; the returned cancel waits for it
		defer close(done)
		if clock.Wait(ctx, deadline) == nil {
			cancel(context.DeadlineExceeded)
		}
	}()
	return ctx, func() { cancel(context.Canceled); <-done }
}

func (c Config) withDefaults() (Config, error) {
	u, err := url.Parse(c.Target)
	if err != nil {
		return c, fmt.Errorf("bench: target: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("bench: target %q is not an http(s) URL", c.Target)
	}
	c.Path = cmp.Or(c.Path, "/v1/chat/completions")
	c.Model = cmp.Or(c.Model, "default")
	c.MaxInFlight = cmp.Or(max(c.MaxInFlight, 0), 10000)
	c.Timeout = cmp.Or(max(c.Timeout, 0), 5*time.Minute)
	c.DrainTimeout = cmp.Or(max(c.DrainTimeout, 0), c.Timeout+time.Second)
	c.BlockTokens = cmp.Or(max(c.BlockTokens, 0), DefaultBlockTokens)
	c.PrebuildBytes = cmp.Or(c.PrebuildBytes, 256<<20)
	c.ProgressEvery = cmp.Or(max(c.ProgressEvery, 0), time.Second)
	if c.HeadersOfInterest == nil {
		c.HeadersOfInterest = []string{"X-Sluice-Backend"}
	}
	if !slices.ContainsFunc(c.HeadersOfInterest, func(h string) bool { return strings.EqualFold(h, "Retry-After") }) {
		c.HeadersOfInterest = append([]string{"Retry-After"}, c.HeadersOfInterest...)
	}
	if c.Client == nil {
		c.Client = NewClient()
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(1, 2))
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	for i, a := range c.Arrivals {
		if len(c.Tenants) > 0 && (a.Tenant < 0 || a.Tenant >= len(c.Tenants)) {
			return c, fmt.Errorf("bench: arrival %d: tenant %d not in 0..%d", i, a.Tenant, len(c.Tenants)-1)
		}
	}
	return c, nil
}

// runner is the state of one Run.
type runner struct {
	cfg      Config
	arr      []Arrival
	records  []Record
	bodies   [][]byte // nil: built per request
	builder  *bodyBuilder
	url      string
	headers  []http.Header // per tenant; one entry without tenants
	itl      histogram
	bufs     sync.Pool // response read buffers, reused across requests
	reqCtx   context.Context
	wg       sync.WaitGroup // one per worker goroutine
	work     chan job       // unbuffered: hands arrivals to idle workers
	inflight atomic.Int64   // only the scheduler increments it
	sent     atomic.Int64
	done     atomic.Int64
	ok       atomic.Int64
	refused  atomic.Int64
	dropped  atomic.Int64
}

// Progress is a run's counts so far, for Config.ProgressFunc.
type Progress struct {
	Elapsed  time.Duration
	Sent     int64 // requests sent
	Done     int64 // requests finished, however
	OK       int64 // answered in full
	Refused  int64 // answered 429 or 503
	InFlight int64
	Dropped  int64 // not sent: MaxInFlight reached
}

// Run replays cfg.Arrivals against cfg.Target and reports the outcome. It
// returns when every request has finished: all arrivals fired, then in-flight
// requests drained for at most DrainTimeout. Cancelling ctx stops the run
// early; the partial Result then has Interrupted set and the error is nil.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	ownClient := cfg.Client == nil
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r, err := newRunner(cfg)
	if err != nil {
		return nil, err
	}
	reqCtx, cancelRequests := context.WithCancel(ctx)
	defer cancelRequests()
	r.reqCtx = reqCtx

	clock := cfg.Clock
	start := clock.Now()
	progressCtx, stopProgress := context.WithCancel(ctx)
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if cfg.Progress != nil || cfg.ProgressFunc != nil {
			r.progress(progressCtx, start)
		}
	}()

	fired := r.schedule(ctx, start)

	// Drain: wait for the in-flight requests, at most DrainTimeout.
	allDone, markDone := context.WithCancel(ctx)
	go func() { r.wg.Wait(); markDone() }()
	_ = clock.Wait(allDone, clock.Now().Add(cfg.DrainTimeout))
	cancelRequests()
	r.wg.Wait()
	markDone()
	end := clock.Now()
	stopProgress()
	<-progressDone
	if ownClient {
		cfg.Client.CloseIdleConnections() // its keep-alive goroutines end with the run
	}
	return r.result(fired, end.Sub(start), ctx.Err() != nil), nil
}

func newRunner(cfg Config) (*runner, error) {
	arr := cfg.Arrivals
	if !slices.IsSortedFunc(arr, func(a, b Arrival) int { return cmp.Compare(a.At, b.At) }) {
		arr = slices.Clone(arr)
		sortByAt(arr)
	}
	if cfg.Duration > 0 {
		n, _ := slices.BinarySearchFunc(arr, cfg.Duration, func(a Arrival, d time.Duration) int { return cmp.Compare(a.At, d) })
		arr = arr[:n]
	}
	if cfg.MaxRequests > 0 && len(arr) > cfg.MaxRequests {
		arr = arr[:cfg.MaxRequests]
	}
	b, err := newBodyBuilder(cfg.Model, cfg.Stream, cfg.BlockTokens, cfg.Rand.Uint64())
	if err != nil {
		return nil, err
	}
	r := &runner{
		cfg:     cfg,
		arr:     arr,
		records: make([]Record, len(arr)),
		builder: b,
		url:     strings.TrimRight(cfg.Target, "/") + cfg.Path,
		work:    make(chan job),
	}
	r.bufs.New = func() any { b := make([]byte, 16<<10); return &b }
	if _, err := http.NewRequest(http.MethodPost, r.url, nil); err != nil {
		return nil, fmt.Errorf("bench: request URL: %w", err)
	}
	var total int64
	for _, a := range arr {
		total += int64(b.size(a))
	}
	if cfg.PrebuildBytes > 0 && total <= cfg.PrebuildBytes {
		r.bodies = make([][]byte, len(arr))
		for i, a := range arr {
			r.bodies[i] = b.build(a, i)
		}
	}
	base := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"sluice-bench"}}
	if cfg.Stream {
		base.Set("Accept", "text/event-stream")
	}
	for k, v := range cfg.Headers {
		base[http.CanonicalHeaderKey(k)] = slices.Clone(v)
	}
	r.headers = []http.Header{base}
	if len(cfg.Tenants) > 0 {
		r.headers = make([]http.Header, len(cfg.Tenants))
		for i, t := range cfg.Tenants {
			h := base.Clone()
			for k, v := range t.Headers {
				h[http.CanonicalHeaderKey(k)] = slices.Clone(v)
			}
			if t.APIKey != "" {
				h.Set("Authorization", "Bearer "+t.APIKey)
			}
			r.headers[i] = h
		}
	}
	return r, nil
}

// schedule fires the arrivals at their planned times and returns how many
// came due. It never waits for a response, only for the clock; everything
// due at the same moment fires in one batch, so timer granularity adds lag
// but never loses arrivals.
func (r *runner) schedule(ctx context.Context, start time.Time) int {
	defer close(r.work) // idle workers exit; busy ones after their request
	for i, a := range r.arr {
		due := start.Add(a.At)
		now := r.cfg.Clock.Now()
		if now.Before(due) {
			if err := r.cfg.Clock.Wait(ctx, due); err != nil {
				return i
			}
			now = r.cfg.Clock.Now()
		}
		if ctx.Err() != nil {
			return i
		}
		rec := &r.records[i]
		rec.Index, rec.Planned = i, a.At
		if len(r.cfg.Tenants) > 0 {
			rec.Tenant = a.Tenant
		}
		if r.inflight.Load() >= int64(r.cfg.MaxInFlight) {
			rec.Dropped, rec.Lag = true, now.Sub(due)
			r.dropped.Add(1)
			continue
		}
		r.inflight.Add(1)
		r.sent.Add(1)
		select {
		case r.work <- job{i, due}: // an idle worker starts it now
		default:
			r.wg.Add(1)
			go r.worker(job{i, due})
		}
	}
	return len(r.arr)
}

// job is one arrival handed to a worker.
type job struct {
	i   int
	due time.Time
}

// worker runs one request at a time: first j, then whatever the scheduler
// hands it while it is idle, until the scheduler closes r.work. Reusing
// goroutines spares each request a new goroutine's stack growth, a large
// share of the CPU cost at thousands of requests per second. The scheduler
// only hands work to a worker already waiting, so this never delays an
// arrival: with no idle worker it starts a new one.
func (r *runner) worker(j job) {
	defer r.wg.Done()
	for ok := true; ok; j, ok = <-r.work {
		r.send(j.i, j.due)
	}
}

// send runs arrival i; it ends with the request, whose context is
// cancelled by the request timeout or the end of the run.
func (r *runner) send(i int, due time.Time) {
	defer r.inflight.Add(-1)
	rec := &r.records[i]
	a := r.arr[i]
	var body []byte
	if r.bodies != nil {
		body = r.bodies[i]
	} else {
		body = r.builder.build(a, i)
	}
	ctx, cancel := withClockTimeout(r.reqCtx, r.cfg.Clock, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		rec.Kind = KindOther // unreachable: the URL was checked up front
	} else {
		req.Header = r.headers[rec.Tenant].Clone()
		x := exchange{
			client:    r.cfg.Client,
			clock:     r.cfg.Clock,
			req:       req,
			stream:    r.cfg.Stream,
			plannedIn: max(a.InputTokens, 1),
			interest:  r.cfg.HeadersOfInterest,
			hist:      &r.itl,
			bufs:      &r.bufs,
			runCtx:    r.reqCtx,
		}
		x.do(rec, due)
	}
	r.done.Add(1)
	if rec.OK() {
		r.ok.Add(1)
	} else if rec.Refused() {
		r.refused.Add(1)
	}
}

// progress reports the counts every ProgressEvery until ctx is done.
func (r *runner) progress(ctx context.Context, start time.Time) {
	var prevDone int64
	every := r.cfg.ProgressEvery
	next := start.Add(every)
	for {
		if err := r.cfg.Clock.Wait(ctx, next); err != nil {
			return
		}
		p := Progress{Elapsed: next.Sub(start), Sent: r.sent.Load(), Done: r.done.Load(), OK: r.ok.Load(),
			Refused: r.refused.Load(), InFlight: r.inflight.Load(), Dropped: r.dropped.Load()}
		if r.cfg.ProgressFunc != nil {
			r.cfg.ProgressFunc(p)
		} else {
			fmt.Fprintf(r.cfg.Progress, "bench %4.0fs  sent %d  done %d  in-flight %d  ok %d  errors %d  dropped %d  rps %.0f\n",
				p.Elapsed.Seconds(), p.Sent, p.Done, p.InFlight, p.OK, p.Done-p.OK, p.Dropped, float64(p.Done-prevDone)/every.Seconds())
		}
		prevDone = p.Done
		next = next.Add(every)
		if now := r.cfg.Clock.Now(); next.Before(now) {
			next = now.Add(every) // the clock jumped; do not print a backlog of lines
		}
	}
}
