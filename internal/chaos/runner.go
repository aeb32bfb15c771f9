package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// scenario is one attack or fault, run next to the well-behaved client.
type scenario struct {
	name, what string
	quick      bool // part of --quick
	soak       bool // only when named
	exempt     bool // exempt from the failure and p99 targets (gateway SIGKILL)
	// setup starts what the scenario needs besides the pool (Redis, NATS,
	// a webhook receiver) and returns the gateway's config changes and a
	// cleanup. skip != "" skips the scenario with that reason.
	setup func(ctx context.Context, e *env) (spec gatewaySpec, cleanup func(), skip string, err error)
	// attack runs until ctx ends and returns after its connections are
	// closed. It records what it did in the row.
	attack func(ctx context.Context, e *env, row *Row) error
}

// env is what an attack can touch.
type env struct {
	opt      Options
	dir      string
	pool     *pool
	gw       *gateway
	wbLoad   load
	capacity float64
	jobs     *jobTracker // set by scenarios that submit jobs
	daemon   *daemon     // Redis or NATS, set by scenarios that need one
	cluster  *redisCluster
	client   *tally // the well-behaved client's, during the attack
}

// names labels the harness' own loopback addresses for diagnostics.
func (e *env) names() map[string]string {
	m := map[string]string{e.gw.listen: "gateway", e.gw.admin: "admin"}
	for _, u := range e.pool.urls {
		m[strings.TrimPrefix(u, "http://")] = "backend pool (not counted)"
	}
	if e.daemon != nil {
		m[e.daemon.addr] = filepath.Base(e.daemon.name)
	}
	if e.cluster != nil {
		for _, a := range e.cluster.addrs() {
			m[a] = "redis cluster node"
		}
	}
	if e.jobs != nil {
		m[strings.TrimSuffix(strings.TrimPrefix(e.jobs.hookURL, "http://"), "/hook")] = "webhook receiver"
	}
	return m
}

// Row is one scenario's measurements.
type Row struct {
	Name    string
	Skipped string // why it did not run
	Err     string // the harness failed (not a gateway target)

	Calm, Client, Attack counts // well-behaved calm and scenario phases; the attack's own requests

	Jobs                      bool // jobs are involved: the job target applies
	JobsAccepted, Lost, Duped int
	// Unseen are jobs whose 202 the client never read (a gateway killed)
	// whose webhook came, each a job the store holds, terminal, with that
	// result; Stray are webhooks the store cannot account for (an id it
	// does not hold, a body that is no job's result): jobTracker.checkUnseen.
	Unseen, Stray int

	RSSBeforeKiB, RSSPeakKiB int64
	StalledUploads           int // > 0: the RSS target applies
	Before, After            usage

	AttackConns int   // attack connections opened
	AttackHeld  int   // of which the gateway still held open when the attack ended
	BytesEach   int64 // bytes each attack connection sent (typical)

	Exempt bool
	Died   bool // the gateway process died (not SIGKILLed by the scenario)
	Notes  []string
}

func (r *Row) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Targets of issue 11 §5. Each returns "PASS", "FAIL" or "-" (not
// applicable).
func (r Row) rssTarget() string {
	if r.StalledUploads == 0 || r.RSSPeakKiB == 0 {
		return "-"
	}
	limit := int64(64<<10) * int64(r.StalledUploads) / 1000 // KiB
	return passFail(r.RSSPeakKiB-r.RSSBeforeKiB <= limit)
}

func (r Row) p99Target() string {
	if r.Exempt {
		return "-"
	}
	return passFail(r.Calm.P99 > 0 && r.Client.P99 > 0 && r.Client.P99 <= 2*r.Calm.P99)
}

func (r Row) failTarget() string {
	if r.Died {
		return "FAIL"
	}
	if r.Exempt {
		return "-"
	}
	return passFail(r.Client.Unannounced+r.Attack.Unannounced == 0)
}

func (r Row) jobTarget() string {
	if !r.Jobs {
		return "-"
	}
	return passFail(r.Lost == 0 && r.Duped == 0 && r.Stray == 0)
}

func (r Row) leakTarget() string {
	if r.Died || r.Before.FDs == 0 || r.After.FDs == 0 {
		return "FAIL"
	}
	return passFail(within(r.Before.Goroutines, r.After.Goroutines) && within(r.Before.FDs, r.After.FDs))
}

// TargetNames are the targets a row is judged on, as the table's columns
// name them.
var TargetNames = []string{"rss", "p99", "fail", "jobs", "leak"}

// passes reports whether the row meets each of the named targets.
func (r Row) passes(targets []string) bool {
	verdict := map[string]func() string{"rss": r.rssTarget, "p99": r.p99Target, "fail": r.failTarget,
		"jobs": r.jobTarget, "leak": r.leakTarget}
	for _, name := range targets {
		if v, ok := verdict[name]; ok && v() == "FAIL" {
			return false
		}
	}
	return true
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func (r Row) summary() string {
	switch {
	case r.Skipped != "":
		return "skipped: " + r.Skipped
	case r.Err != "":
		return "harness error: " + r.Err
	}
	return fmt.Sprintf("p99 %s -> %s, unannounced %d+%d, fds %d -> %d, goroutines %d -> %d",
		ms(r.Calm.P99), ms(r.Client.P99), r.Client.Unannounced, r.Attack.Unannounced,
		r.Before.FDs, r.After.FDs, r.Before.Goroutines, r.After.Goroutines)
}

// runner runs one scenario.
type runner struct {
	opt      Options
	base     string
	capacity float64
	soak     time.Duration // the soak's length: --duration when given, else an hour
}

// run runs one scenario on a pool and a gateway of its own: a calm
// baseline of the well-behaved client, then the attack next to that client,
// then what the attack left behind. The phases are the methods below; run
// keeps every defer, so whatever phase ends the run, what it started stops
// in reverse order (the trace last of all, after the gateway's shutdown).
func (rn *runner) run(ctx context.Context, sc scenario) Row {
	row := Row{Name: sc.name, Exempt: sc.exempt}
	dir, err := os.MkdirTemp(rn.base, sc.name+"-")
	if err != nil {
		row.Err = err.Error()
		return row
	}
	p, err := startPool(rn.opt.Backends, simConfig)
	if err != nil {
		row.Err = err.Error()
		return row
	}
	defer p.stop()
	e := &env{opt: rn.opt, dir: dir, pool: p, capacity: rn.capacity,
		wbLoad: load{PromptTokens: promptTokens, OutputTokens: outputTokens, Rate: rn.capacity / 2, Timeout: 30 * time.Second}}
	if sc.soak {
		e.wbLoad.Rate = rn.capacity * 0.8
	}
	spec := gatewaySpec{}
	if sc.setup != nil {
		s, cleanup, skip, err := sc.setup(ctx, e)
		if cleanup != nil {
			defer cleanup()
		}
		if skip != "" {
			row.Skipped = skip
			return row
		}
		if err != nil {
			row.Err = "setup: " + err.Error()
			return row
		}
		spec = s
	}
	spec.Trace = rn.opt.Trace != nil
	var traces map[string]*tracer // by phase; nil when the run is not traced
	if spec.Trace {
		traces = map[string]*tracer{}
		// Deferred before the gateway's stop, so it runs after it: the
		// access log is flushed on shutdown.
		defer func() { writeTrace(rn.opt.Trace, sc.name, p.urls, dir, traces) }()
	}
	gw, err := newGateway(rn.opt.Exe, dir, p.urls, spec)
	if err != nil {
		row.Err = err.Error()
		return row
	}
	e.gw = gw
	if err := gw.start(ctx); err != nil {
		row.Err = err.Error()
		return row
	}
	defer gw.stop()

	wb := newWellBehaved(gw.url(), e.wbLoad)
	if err := rn.calm(ctx, e, wb, traces, &row); err != nil {
		row.Err = err.Error()
		return row
	}
	rn.attack(ctx, sc, e, wb, traces, &row)
	rn.aftermath(ctx, e, &row)
	return row
}

// calm runs the well-behaved client alone, after a discarded warm-up, and
// takes the baseline the attack is judged against: the client's p99, then,
// once the pool is idle, the gateway's goroutines, fds and RSS.
func (rn *runner) calm(ctx context.Context, e *env, wb *wellBehaved, traces map[string]*tracer, row *Row) error {
	// A second of warm-up (discarded): the gateway's first requests open
	// its upstream connections and seed its latency estimates.
	warmCtx, cancel := context.WithTimeout(ctx, time.Second)
	wb.run(warmCtx, &tally{})
	cancel()

	calm := phaseTally(traces, "calm")
	stopStatus := rn.traceStatus(ctx, e, calm.trace)
	calmCtx, cancel := context.WithTimeout(ctx, rn.opt.Calm)
	wb.run(calmCtx, calm)
	cancel()
	stopStatus()
	row.Calm = calm.counts()

	if err := rn.quiesce(ctx, e); err != nil {
		return err
	}
	before, err := e.gw.proc().sample(ctx)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	row.Before = before
	_ = e.gw.proc().resetPeak()
	row.RSSBeforeKiB = before.RSSKiB
	return nil
}

// attack runs the scenario's attack next to the well-behaved client for
// the scenario's length and records the client's counts, the RSS peak and,
// once they have settled, the fate of the jobs the scenario submitted.
func (rn *runner) attack(ctx context.Context, sc scenario, e *env, wb *wellBehaved, traces map[string]*tracer, row *Row) {
	dur := rn.opt.Duration
	if sc.soak {
		dur = rn.soak
	}
	attackCtx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	client := phaseTally(traces, "attack")
	stopStatus := rn.traceStatus(ctx, e, client.trace)
	defer stopStatus()
	e.client = client
	var wg sync.WaitGroup
	wg.Go(func() { wb.run(attackCtx, client) })
	peak := rn.watchRSS(attackCtx, e)
	attackErr := sc.attack(attackCtx, e, row)
	cancel()
	wg.Wait()
	stopStatus()
	row.Client = client.counts()
	row.RSSPeakKiB = max(row.RSSPeakKiB, <-peak)
	if attackErr != nil {
		row.Err = "attack: " + attackErr.Error()
	}
	if row.Jobs && e.jobs != nil {
		e.jobs.settle(ctx, e.gw.url(), jobSettle, row)
	}
}

// aftermath records what the attack left behind: a dead gateway, or, once
// the gateway has settled, its goroutines and fds against the baseline,
// with the sockets, files and goroutine stacks it still holds when the leak
// target fails.
func (rn *runner) aftermath(ctx context.Context, e *env, row *Row) {
	if !e.gw.alive() {
		// The gateway's failure, not the harness': every target it
		// touches fails, and its last words go in the notes.
		row.Died = true
		row.note("the gateway died during the attack: %s", oneLine(e.gw.logTail()))
		return
	}
	rn.quiesce(ctx, e)
	row.After = rn.settle(ctx, e, row.Before)
	b, a := row.Before.FDAccount, row.After.FDAccount
	if b.Store != a.Store {
		row.note("Redis connections (one per node, not counted): %d -> %d", b.Store, a.Store)
	}
	if row.leakTarget() == "FAIL" {
		if g := peerGrowth(b.Peers, a.Peers, e.names()); g != "" {
			row.note("sockets left after the attack: %s", g)
		}
		if g := countGrowth(b.Files, a.Files); g != "" {
			row.note("other fds left after the attack: %s", g)
		}
		if g := stackGrowth(row.Before.Stacks, row.After.Stacks, 8); g != "" {
			row.note("goroutines left after the attack, by stack: %s", g)
		}
	}
}

// phaseTally is a fresh tally for one phase of the run, tracing every
// request into traces[phase] when the run is traced (traces non-nil).
func phaseTally(traces map[string]*tracer, phase string) *tally {
	t := &tally{}
	if traces != nil {
		t.trace = newTracer()
		traces[phase] = t.trace
	}
	return t
}

// watchRSS samples the gateway's VmHWM (reset before the attack) until ctx
// ends, then sends the peak. It follows a restarted gateway (SIGKILL
// scenario) by asking e.gw each time.
func (rn *runner) watchRSS(ctx context.Context, e *env) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		var peak int64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if _, hwm, err := e.gw.proc().rssKiB(); err == nil {
				peak = max(peak, hwm)
			}
			select {
			case <-ctx.Done():
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// jobSettle is how long accepted jobs may take to finish after an attack:
// longer than the queue's AckWait (15 s, jobs.DefaultAckWait), after which
// a job whose runner died (SIGKILL) is taken over, with room to spare.
const jobSettle = 90 * time.Second

func (rn *runner) settleTime() time.Duration {
	if rn.opt.Quick {
		return 10 * time.Second
	}
	return 30 * time.Second
}

// quiesce waits (bounded) until the pool has nothing running or waiting,
// so a baseline is not taken in the middle of traffic.
func (rn *runner) quiesce(ctx context.Context, e *env) error {
	deadline := time.Now().Add(rn.settleTime())
	for time.Now().Before(deadline) {
		busy := false
		for _, s := range e.pool.sims {
			st := s.Stats()
			if st.Running+st.Waiting > 0 {
				busy = true
			}
		}
		if !busy {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Let closed connections' goroutines finish exiting.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(300 * time.Millisecond):
	}
	return nil
}

// settle samples the gateway until its goroutines and fds are back within
// 5% of before, or the settle time passes; it returns the last sample.
func (rn *runner) settle(ctx context.Context, e *env, before usage) usage {
	deadline := time.Now().Add(rn.settleTime())
	var last usage
	for {
		u, err := e.gw.proc().sample(ctx)
		if err == nil {
			last = u
			if within(before.Goroutines, u.Goroutines) && within(before.FDs, u.FDs) {
				return u
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return last
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// traceStatus samples the gateway's /status into tr (a traced run) every
// 50ms until the returned stop is called; without a trace it does nothing.
func (rn *runner) traceStatus(ctx context.Context, e *env, tr *tracer) (stop func()) {
	if tr == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { sampleStatus(ctx, e.gw.proc().client, "http://"+e.gw.admin+"/status", tr, 50*time.Millisecond) })
	return func() { cancel(); wg.Wait() }
}
