package main

import (
	"context"
	"errors"
	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/demo"
)

// interactiveKey is the interactive clients' API key (its own tenant).
const interactiveKey = "sk-bench-interactive"

// Leg is one run of the interactive load, alone (A) or beside the batch (B).
type Leg struct {
	Name      string `json:"name"`
	WithBatch bool   `json:"with_batch"`
	// Reserve > 0: the jobs ran behind the prototype gate keeping Reserve
	// slots free (headroomGate), not behind Sluice's own.
	Reserve int `json:"reserve,omitempty"`
	// Preempt: the jobs ran behind the prototype preemptor, which stopped
	// Preempted of them to free slots for waiting interactive requests.
	Preempt     bool        `json:"preempt,omitempty"`
	Preempted   int         `json:"preempted,omitempty"`
	Interactive Interactive `json:"interactive"`
	Pool        PoolDiag    `json:"pool"`
	Gateway     GatewayDiag `json:"gateway"`
	Batch       *BatchRun   `json:"batch,omitempty"`
	Figures     *Figures    `json:"figures,omitempty"` // batch legs: against leg A
	// Warnings counts the gateway's log records at level WARN or above;
	// WarningSample holds the first few.
	Warnings      int               `json:"gateway_warnings"`
	WarningSample []string          `json:"gateway_warning_sample,omitempty"`
	WallS         float64           `json:"wall_s"`
	Samples       []benchkit.Sample `json:"samples"`
	Bench         *bench.Result     `json:"bench"`
}

// Interactive is what the interactive clients saw.
type Interactive struct {
	Planned    int     `json:"planned"`
	OfferedRPS float64 `json:"offered_rps"` // planned / W
	OK         int     `json:"ok"`
	Refused    int     `json:"refused"` // 429/503
	Failed     int     `json:"failed"`  // any other failure
	// CompletedInW counts OK requests that ended within W.
	CompletedInW int           `json:"completed_in_w"`
	GoodputRPS   float64       `json:"goodput_rps"` // OK with TTFT <= SLO, per second of W
	TTFT         bench.Summary `json:"ttft"`
	ITL          bench.Summary `json:"itl"`
	E2E          bench.Summary `json:"e2e"`
	LagP99ms     float64       `json:"generator_lag_p99_ms"`
	KeptUp       bool          `json:"generator_kept_up"`
}

// PoolDiag is the pool's state averaged over the interactive load's W.
type PoolDiag struct {
	Slots          int     `json:"slots"`
	Occupancy      float64 `json:"occupancy"`       // mean share of slots decoding
	BackendWaiting float64 `json:"backend_waiting"` // mean, pool total
	GatewayQueued  float64 `json:"gateway_queued"`  // mean, all classes
	GatewayInUse   float64 `json:"gateway_in_use"`  // mean granted slots
	Samples        int     `json:"samples"`
}

// GatewayDiag are the gateway's counters at the end of the leg.
type GatewayDiag struct {
	InteractiveGranted     float64            `json:"interactive_granted"`
	InteractiveWaitMeanMs  float64            `json:"interactive_wait_mean_ms"`
	InteractiveWaitedShare float64            `json:"interactive_waited_share"` // waited over 1 ms
	BatchGranted           float64            `json:"batch_granted"`
	Rejections             map[string]float64 `json:"rejections,omitempty"`
	JobsExecuted           float64            `json:"jobs_executed"`
	JobsRetried            float64            `json:"jobs_retried"`
	JobsDead               float64            `json:"jobs_dead_lettered"`
	// JobsPreempted is sluice_queue_preempted_total: spare tickets (jobs)
	// stopped for a live request that found the pool full.
	JobsPreempted float64 `json:"jobs_preempted"`
	// PreemptedHeldS is sluice_queue_preempted_seconds_total: the
	// slot-seconds those jobs had run when stopped (work thrown away).
	PreemptedHeldS float64 `json:"preempted_held_s"`
}

// BatchRun is leg B's batch. Times are seconds after POST /v1/batches was
// sent (the upload happens before).
type BatchRun struct {
	ID          string  `json:"id"`
	Requests    int     `json:"requests"`
	InputBytes  int     `json:"input_bytes"`
	UploadS     float64 `json:"upload_s"` // POST /v1/files, before the clock starts
	CreateS     float64 `json:"create_s"` // POST /v1/batches answered: every job enqueued, in_progress
	CountedS    float64 `json:"counted_s"`
	CompletedS  float64 `json:"completed_s"` // terminal status first seen (output file written)
	Status      string  `json:"status"`
	Completed   int     `json:"completed"`
	Failed      int     `json:"failed"`
	OutputLines int     `json:"output_lines"`
	// InteractiveEndS is when the last interactive request ended.
	InteractiveEndS float64 `json:"interactive_end_s"`
	// Alone* measure the batch by itself, from one second after the
	// interactive load ended until 95% of the batch was done (backend
	// completions): its rate and the pool's slot occupancy.
	AloneFromS     float64 `json:"alone_from_s"`
	AloneToS       float64 `json:"alone_to_s"`
	AloneRPS       float64 `json:"alone_rps"`
	AloneOccupancy float64 `json:"alone_occupancy"`
	// DoneAtW is the gateway's count (completed + failed) at W,
	// interpolated between polls; BackendDoneAtW the backends' completions
	// by W minus the interactive requests completed by W.
	DoneAtW        float64         `json:"done_at_w"`
	BackendDoneAtW float64         `json:"backend_done_at_w"`
	Progress       []progressPoint `json:"progress"`

	outputID string // the output file of the final reading
}

// legSpec says what a leg runs beside the interactive load.
type legSpec struct {
	name  string
	batch bool
	// reserve > 0 or preempt runs the jobs in workers the benchmark starts,
	// behind the prototypes of proto.go (keep reserve slots free; preempt
	// jobs while interactive requests wait) instead of the gateway's own
	// workers and gate.
	reserve int
	preempt bool
}

func (s legSpec) proto() bool { return s.reserve > 0 || s.preempt }

// legRig is one leg's simulators, gateway and, for a prototype leg, the
// benchmark's own job workers.
type legRig struct {
	*benchkit.Rig
	gw    *runningGateway
	proto *protoWorker // nil: the gateway's own workers run the jobs
	logs  *warnLog     // the gateway's warnings
}

// startLeg starts fresh simulators and a fresh gateway with an empty queue
// in a temporary directory (and the prototype workers spec asks for).
func (h *harness) startLeg(ctx context.Context, spec legSpec) (lr *legRig, err error) {
	o := h.opt
	rig, err := benchkit.StartRig(ctx, o.Backends, o.Sim)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			rig.Stop()
		}
	}()
	dir, err := os.MkdirTemp("", "sluice-bench-batch-")
	if err != nil {
		return nil, err
	}
	rig.Defer(func() { os.RemoveAll(dir) })
	lr = &legRig{Rig: rig, logs: &warnLog{}}
	logger := slog.New(slog.NewTextHandler(lr.logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := gatewayConfig(rig.Sims, dir, o)
	if spec.proto() {
		cfg.Queue.WorkerDisabled = true
		if cfg.Queue.Listen, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	if lr.gw, err = startGateway(ctx, &cfg, logger); err != nil {
		return nil, err
	}
	rig.Gateway(lr.gw.url, lr.gw.admin, lr.gw.stop)
	if err := waitReady(ctx, lr.gw.url); err != nil {
		return nil, err
	}
	if spec.proto() {
		if lr.proto, err = startProtoWorker(ctx, "nats://"+cfg.Queue.Listen, lr.gw.app.Gateway(), o.Workers, spec, logger); err != nil {
			return nil, err
		}
		rig.Defer(lr.proto.stop)
	}
	return lr, nil
}

// legRun is what a leg's loads produced.
type legRun struct {
	res     *bench.Result // the interactive clients'
	samples []benchkit.Sample
	batch   *BatchRun // nil without a batch
	intEnd  time.Duration
}

// runLeg starts fresh simulators and a fresh gateway, runs the interactive
// plan (and the batch beside it) and summarises.
func (h *harness) runLeg(ctx context.Context, spec legSpec) (*Leg, error) {
	h.progress.Leg("%s: %d interactive requests over %s", spec.name, len(h.plan), h.opt.Duration)
	wall := time.Now()
	lr, err := h.startLeg(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer lr.Stop()
	c := api{base: lr.gw.url, client: &http.Client{Timeout: 5 * time.Minute}}
	run, err := h.runLoads(ctx, lr, c, spec)
	if err != nil {
		return nil, err
	}
	leg, err := h.summarise(ctx, lr, c, spec, run)
	if err != nil {
		return nil, err
	}
	leg.WallS = time.Since(wall).Seconds()
	h.progress.Printf("      interactive p50/p99 TTFT %.0f/%.0f ms, %d ok, %d refused, %d failed; pool %.0f%% busy during W",
		run.res.TTFT.P50, run.res.TTFT.P99, leg.Interactive.OK, leg.Interactive.Refused, leg.Interactive.Failed, 100*leg.Pool.Occupancy)
	if br := leg.Batch; br != nil {
		h.progress.Printf("      batch %s: %d completed, %d failed in %.1f s (created in %.1f s); %.0f done by W; alone %.1f req/s at %.0f%% busy",
			br.Status, br.Completed, br.Failed, br.CompletedS, br.CreateS, br.BackendDoneAtW, br.AloneRPS, 100*br.AloneOccupancy)
	}
	return leg, nil
}

// runLoads uploads the batch (when spec has one), then starts it beside
// the interactive plan while sampling the pool, and waits for both.
func (h *harness) runLoads(ctx context.Context, lr *legRig, c api, spec legSpec) (legRun, error) {
	o := h.opt
	var run legRun
	var fileID string
	var upload time.Duration
	if spec.batch {
		t := time.Now()
		var err error
		if fileID, err = c.upload(ctx, h.input); err != nil {
			return run, err
		}
		upload = time.Since(t)
	}
	t0 := time.Now()
	smp := lr.Sample(ctx, o.Sample, 0)
	var bwg sync.WaitGroup
	var berr error
	intDone := make(chan time.Duration, 1) // when the interactive load ended, for the batch's timeout
	if spec.batch {
		run.batch = &BatchRun{Requests: o.BatchSize, InputBytes: len(h.input), UploadS: upload.Seconds()}
		bwg.Go(func() { berr = h.batch(ctx, c, fileID, t0, run.batch, intDone) })
	}
	res, err := bench.Run(ctx, bench.Config{
		Target: lr.gw.url, Model: o.Sim.Model, Stream: true, Arrivals: h.plan,
		Tenants: []bench.Tenant{{Name: "interactive", APIKey: interactiveKey}},
		Timeout: 60 * time.Second, SLOTTFT: o.SLO, Label: spec.name,
	})
	run.intEnd = time.Since(t0)
	intDone <- run.intEnd
	bwg.Wait()
	run.res, run.samples = res, smp.Finish()
	switch {
	case err != nil:
		return run, err
	case res.Interrupted || ctx.Err() != nil:
		return run, ctx.Err()
	}
	return run, berr
}

// summarise turns a leg's run into its figures, reading the gateway's
// counters and the batch's output.
func (h *harness) summarise(ctx context.Context, lr *legRig, c api, spec legSpec, run legRun) (*Leg, error) {
	o := h.opt
	leg := &Leg{Name: spec.name, WithBatch: spec.batch, Reserve: spec.reserve, Preempt: spec.preempt,
		Bench: run.res, Samples: run.samples, Interactive: h.interactive(run.res)}
	slots := o.Backends * o.Sim.Slots
	m, ns := benchkit.Window(run.samples, 0, o.Duration.Seconds())
	leg.Pool = PoolDiag{Slots: slots, Occupancy: m.Running / float64(slots), BackendWaiting: m.Waiting,
		GatewayQueued: m.GWQueued, GatewayInUse: m.GWInUse, Samples: ns}
	leg.Gateway = gatewayDiag(ctx, c.client, lr.gw.admin)
	if p := lr.proto; p != nil {
		st := p.store.Stats()
		leg.Gateway.JobsExecuted, leg.Gateway.JobsRetried, leg.Gateway.JobsDead = float64(st.Executed), float64(st.Retried), float64(st.DeadLettered)
		if p.pre != nil {
			leg.Preempted = int(p.pre.count.Load())
		}
	}
	if br := run.batch; br != nil {
		br.InteractiveEndS = run.intEnd.Seconds()
		h.batchFigures(br, run.res, run.samples)
		var err error
		if br.OutputLines, err = c.outputLines(ctx, br.outputID); err != nil {
			return nil, err
		}
		leg.Batch = br
	}
	leg.Warnings, leg.WarningSample = lr.logs.summary()
	return leg, nil
}

// batch creates the batch at t0 and follows it until it is terminal, or
// until BatchTimeout after the interactive load ended.
func (h *harness) batch(ctx context.Context, c api, fileID string, t0 time.Time, br *BatchRun, intDone <-chan time.Duration) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-intDone:
		case <-wctx.Done():
			return
		}
		select {
		case <-time.After(h.opt.BatchTimeout):
			cancel()
		case <-wctx.Done():
		}
	}()
	s, err := c.create(ctx, fileID)
	if err != nil {
		return err
	}
	br.CreateS = time.Since(t0).Seconds()
	br.ID = s.ID
	pts, last, err := c.watch(wctx, s.ID, t0, h.opt.Poll)
	br.Progress = pts
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if last != nil {
		br.Status = last.Status
		br.Completed, br.Failed = last.RequestCounts.Completed, last.RequestCounts.Failed
		br.outputID = last.OutputFileID
		if last.terminal() && len(pts) > 0 {
			br.CompletedS = pts[len(pts)-1].T
		}
	}
	for _, p := range pts {
		if p.Done >= br.Requests {
			br.CountedS = p.T
			break
		}
	}
	if err != nil { // timed out
		h.progress.Printf("      the batch did not finish within %s after the interactive load", h.opt.BatchTimeout)
	}
	return nil
}

// interactive summarises the interactive clients' records.
func (h *harness) interactive(res *bench.Result) Interactive {
	w := h.opt.Duration
	in := Interactive{Planned: res.Planned, OfferedRPS: float64(res.Planned) / w.Seconds(), OK: res.OK,
		TTFT: res.TTFT, ITL: res.ITL, E2E: res.E2E, LagP99ms: res.Lag.P99, KeptUp: res.KeptUp}
	good := 0
	for i := range res.Records {
		r := &res.Records[i]
		switch {
		case r.OK():
			if benchkit.Ended(r) <= w {
				in.CompletedInW++
			}
			if r.TTFT <= h.opt.SLO {
				good++
			}
		case r.Refused():
			in.Refused++
		default:
			in.Failed++
		}
	}
	in.GoodputRPS = float64(good) / w.Seconds()
	return in
}

// interactiveDone counts the OK interactive requests that ended in [from, to)
// seconds of the leg.
func interactiveDone(res *bench.Result, from, to float64) int {
	n := 0
	for i := range res.Records {
		r := &res.Records[i]
		if !r.OK() {
			continue
		}
		if end := benchkit.Ended(r).Seconds(); end >= from && end < to {
			n++
		}
	}
	return n
}

// batchFigures derives the batch's progress at W and its rate alone from
// the polls and the backends' completion counts.
func (h *harness) batchFigures(br *BatchRun, res *bench.Result, ss []benchkit.Sample) {
	w := h.opt.Duration.Seconds()
	br.DoneAtW = progressAt(br.Progress, w)
	br.BackendDoneAtW = max(finishedAt(ss, w)-float64(interactiveDone(res, 0, w)), 0)
	okTotal := float64(res.OK)
	from := br.InteractiveEndS + 1
	to := -1.0
	for _, x := range ss {
		if x.T >= from && x.Finished-okTotal >= 0.95*float64(br.Requests) {
			to = x.T
			break
		}
	}
	if to-from >= 5 {
		br.AloneFromS, br.AloneToS = from, to
		br.AloneRPS = (finishedAt(ss, to) - finishedAt(ss, from)) / (to - from)
		m, _ := benchkit.Window(ss, from, to)
		br.AloneOccupancy = m.Running / float64(h.opt.Backends*h.opt.Sim.Slots)
	}
}

// finishedAt is the backends' completion count at t seconds, interpolated
// between the samples around it.
func finishedAt(ss []benchkit.Sample, t float64) float64 {
	return benchkit.ValueAt(ss, t, func(s benchkit.Sample) float64 { return s.Finished })
}

// progressAt interpolates the batch's done count at t seconds.
func progressAt(pts []progressPoint, t float64) float64 {
	prev := progressPoint{}
	for _, p := range pts {
		if p.T >= t {
			if p.T == prev.T {
				return float64(p.Done)
			}
			return float64(prev.Done) + float64(p.Done-prev.Done)*(t-prev.T)/(p.T-prev.T)
		}
		prev = p
	}
	return float64(prev.Done)
}

// gatewayConfig is Sluice's defaults with one model served by urls, the
// embedded queue in dir, o.Workers workers and, with o.MaxConc > 0, a static
// concurrency limit per backend.
func gatewayConfig(urls []string, dir string, o options) config.Config {
	cfg := demo.GatewayConfig(urls)
	cfg.Models[0].Name = o.Sim.Model
	cfg.Queue.Enabled = true
	cfg.Queue.DataDir = dir
	cfg.Queue.Workers = o.Workers
	if o.Reserve >= 0 {
		cfg.Admission.SpareReserve = o.Reserve
	}
	for i := range cfg.Models[0].Backends {
		cfg.Models[0].Backends[i].MaxConcurrency = o.MaxConc
	}
	return cfg
}

// waitReady waits until the gateway answers /v1/models.
func waitReady(ctx context.Context, target string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target+"/v1/models", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the gateway did not become ready within 30s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// gatewayDiag reads the gateway's admission and job counters.
func gatewayDiag(ctx context.Context, c *http.Client, target string) GatewayDiag {
	g := benchkit.Scrape(ctx, c, target+"/metrics")
	d := GatewayDiag{Rejections: benchkit.ByLabel(g, "sluice_queue_rejections_total", "reason")}
	const wait = "sluice_queue_wait_seconds"
	d.InteractiveGranted = benchkit.SumWhere(g, wait+"_count", "class", "interactive")
	d.BatchGranted = benchkit.SumWhere(g, wait+"_count", "class", "batch")
	if d.InteractiveGranted > 0 {
		d.InteractiveWaitMeanMs = 1000 * benchkit.SumWhere(g, wait+"_sum", "class", "interactive") / d.InteractiveGranted
		var atOnce float64
		for _, m := range g {
			if m.Name == wait+"_bucket" && benchkit.Label(m.Labels, "class") == "interactive" && benchkit.Label(m.Labels, "le") == "0.001" {
				atOnce += m.Value
			}
		}
		d.InteractiveWaitedShare = 1 - atOnce/d.InteractiveGranted
	}
	d.JobsExecuted = benchkit.Sum(g, "sluice_jobs_executed_total")
	d.JobsPreempted = benchkit.Sum(g, "sluice_queue_preempted_total")
	d.PreemptedHeldS = benchkit.Sum(g, "sluice_queue_preempted_seconds_total")
	d.JobsRetried = benchkit.Sum(g, "sluice_jobs_retried_total")
	d.JobsDead = benchkit.Sum(g, "sluice_jobs_dead_lettered_total")
	return d
}

// warnLog collects the gateway's WARN and ERROR log lines.
type warnLog struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (l *warnLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if len(l.first) < 5 {
		l.first = append(l.first, strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (l *warnLog) summary() (int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n, l.first
}
