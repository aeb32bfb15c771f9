package main

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/bench"
)

// The mix scenario: the goodput legs' question (requests answered within
// what the client waits for, Sluice's defaults vs round robin, same run)
// on a workload that takes the paths the headline never does: several
// tenants with real shares (ServeGen m-mid's busiest clients), one of
// them a newcomer halfway through; real prompt lengths up to 8k tokens,
// unscaled, so the simulators' prefill is a large part of a request's
// time and about half the prompts are long (>= 1,024 tokens, the size
// from which the gateway prices a prompt by the queued prefill); and a
// share of non-streamed requests.

const (
	mixServeGen = "/work/shared/traces/servegen/language/m-mid"
	// mixLong is the prompt (trace tokens) from which a request is in the
	// long class: admission's longPrompt. The gateway estimates a prompt
	// as bytes/4; a bench word is 4 bytes and a space, so such a prompt is
	// estimated at 1,280 tokens or more, long there too.
	mixLong = 1024
	// Classes of a mix leg, in table order.
	classStreamShort   = "stream, short"
	classStreamLong    = "stream, long"
	classNoStreamShort = "non-stream, short"
	classNoStreamLong  = "non-stream, long"
)

var mixClasses = []string{classStreamShort, classStreamLong, classNoStreamShort, classNoStreamLong}

// MixReport is the mix scenario's part of the report.
type MixReport struct {
	Trace       string      `json:"trace"`
	ServeGen    string      `json:"servegen_dir"`
	Tenants     []MixTenant `json:"tenants"`
	NoStream    float64     `json:"non_stream_share"`
	MaxInput    int         `json:"clamp_input_tokens"`
	MaxOutput   int         `json:"clamp_output_tokens"`
	OutputScale float64     `json:"output_scale"`
	MeanPrompt  float64     `json:"mean_prompt_tokens"`
	MeanOutput  float64     `json:"mean_output_tokens"`
	CapacityRPS float64     `json:"capacity_rps"`
	SLOms       float64     `json:"slo_ttft_ms"`
	TPOTms      float64     `json:"non_stream_tpot_budget_ms"`
	TimeoutS    float64     `json:"client_timeout_s"`
	DurationS   float64     `json:"leg_duration_s"`
	Legs        []*MixLeg   `json:"legs"`
}

// MixTenant is one tenant of the mix: the ServeGen client it stands for,
// its share of the arrivals and when it starts (a fraction of the leg).
type MixTenant struct {
	Name   string  `json:"name"`
	Client string  `json:"servegen_client"`
	Share  float64 `json:"share"`
	From   float64 `json:"starts_at_leg_fraction"`
}

// MixLeg is one load, regime and path of the mix.
type MixLeg struct {
	Load    float64    `json:"load_x_capacity"`
	Regime  string     `json:"regime"`
	Path    string     `json:"path"`
	All     MixCount   `json:"all"`
	Classes []MixCount `json:"classes"` // mixClasses' order
	Tenants []MixCount `json:"tenants"` // MixReport.Tenants' order
	// Cross: each tenant by class (tenant-major, mixClasses' order).
	Cross   []MixCount  `json:"tenant_classes"`
	KeptUp  bool        `json:"generator_kept_up"`
	WallS   float64     `json:"wall_s"`
	Why     *Why        `json:"-"`
	records []mixRecord // kept for tests
	slo     time.Duration
	step    time.Duration
}

// MixCount is how one class's or tenant's requests of a leg ended.
type MixCount struct {
	Name    string `json:"name"`
	Offered int    `json:"offered"`
	// InSLO: answered OK within what the client waits for (mixRecord.good).
	InSLO int `json:"answered_in_slo"`
	// Late: answered OK, but after it.
	Late          int `json:"answered_late"`
	RefusedWithRA int `json:"refused_with_retry_after"`
	// RefusedAtArrival: of those, refused with no time in Sluice's queue
	// (X-Sluice-Queue-Time 0 or absent).
	RefusedAtArrival int `json:"refused_at_arrival"`
	// RefusedBy: the refused with Retry-After by the error code of their
	// body (Sluice's: its admission reason, pool_saturated for saturated;
	// the simulator's server_busy); "no code" without one. Sluice's
	// pool_saturated has three causes its message tells apart
	// (refusalKey): pool_saturated/estimate, pool_saturated/prefill,
	// pool_saturated/no_backend_slot.
	RefusedBy     map[string]int `json:"refused_by_code,omitempty"`
	Unannounced   int            `json:"unannounced_failures"`
	UnannouncedBy map[string]int `json:"unannounced_by_kind,omitempty"`
	// Of the answered: end-to-end and time-to-first-token percentiles, and
	// the mean time in Sluice's queue (X-Sluice-Queue-Time; 0 direct).
	E2EP50ms  float64 `json:"answered_e2e_p50_ms"`
	E2EP99ms  float64 `json:"answered_e2e_p99_ms"`
	TTFTP99ms float64 `json:"answered_ttft_p99_ms"`
	QueueMs   float64 `json:"answered_queue_mean_ms"`

	e2e, ttft []time.Duration
}

// finish computes the percentiles of what add collected.
func (c *MixCount) finish() {
	c.E2EP50ms, c.E2EP99ms = benchkit.PercentileMs(c.e2e, 50), benchkit.PercentileMs(c.e2e, 99)
	c.TTFTP99ms = benchkit.PercentileMs(c.ttft, 99)
	if n := len(c.e2e); n > 0 {
		c.QueueMs /= float64(n)
	}
}

// mixRecord is a request of a leg with what it was.
type mixRecord struct {
	rec    bench.Record
	arr    bench.Arrival
	stream bool
}

func (m mixRecord) class() string {
	long := m.arr.InputTokens >= mixLong
	switch {
	case m.stream && long:
		return classStreamLong
	case m.stream:
		return classStreamShort
	case long:
		return classNoStreamLong
	}
	return classNoStreamShort
}

// good reports an answer within what its client waits for. A stream:
// first token within the SLO. A non-streamed request shows its client
// nothing until the whole answer (the head comes with it), so its bound
// is the TTFT SLO plus its max_tokens at a time-per-output-token budget
// (step): the two bounds a streaming client would hold it to, summed.
func (m mixRecord) good(slo, step time.Duration) bool {
	if !m.rec.OK() {
		return false
	}
	if m.stream {
		return m.rec.TTFT <= slo
	}
	return m.rec.E2E <= slo+time.Duration(max(m.arr.OutputTokens, 1))*step
}

func (c *MixCount) add(m mixRecord, slo, step time.Duration) {
	c.Offered++
	rec := &m.rec
	if rec.OK() {
		c.e2e, c.ttft = append(c.e2e, rec.E2E), append(c.ttft, rec.TTFT)
		c.QueueMs += queueTime(rec)
	}
	switch {
	case m.good(slo, step):
		c.InSLO++
	case rec.OK():
		c.Late++
	case rec.Refused() && header(rec, hdrRetryAfter) != "":
		c.RefusedWithRA++
		if queueTime(rec) == 0 {
			c.RefusedAtArrival++
		}
		if c.RefusedBy == nil {
			c.RefusedBy = map[string]int{}
		}
		c.RefusedBy[refusalKey(rec)]++
	default:
		c.Unannounced++
		if c.UnannouncedBy == nil {
			c.UnannouncedBy = map[string]int{}
		}
		c.UnannouncedBy[failureKind(rec)]++
	}
}

// mixPlan is a leg's arrivals, dealt into streamed and non-streamed.
type mixPlan struct {
	stream, noStream []bench.Arrival
}

// mixHarness runs the mix legs.
type mixHarness struct {
	opt     options
	rep     *MixReport
	pool    *pool
	tenants []bench.Tenant
}

// runMix runs the mix scenario: every load, regime and path.
func runMix(ctx context.Context, o options) (*MixReport, error) {
	h, err := newMixHarness(o)
	if err != nil {
		return nil, err
	}
	paths := []string{pathDirect, pathSluice}
	o.prog.Legs += len(o.MixLoads) * len(o.MixRegimes) * len(paths)
	o.prog.Printf("mix: %s, %d tenants, %.0f%% non-streamed: pool capacity %.1f req/s for mean prompt %.0f / output %.0f tokens",
		traceName(h.rep.Trace), len(h.tenants), 100*o.MixNoStream, h.rep.CapacityRPS, h.rep.MeanPrompt, h.rep.MeanOutput)
	for _, k := range o.MixLoads {
		plan, err := h.plan(k)
		if err != nil {
			return nil, err
		}
		for _, regime := range o.MixRegimes {
			for _, path := range paths {
				l, err := h.run(ctx, plan, k, regime, path)
				if err != nil {
					return nil, err
				}
				h.rep.Legs = append(h.rep.Legs, l)
			}
		}
	}
	return h.rep, nil
}

func newMixHarness(o options) (*mixHarness, error) {
	n := max(o.MixTenants, 1)
	clients, shares, err := benchkit.ServeGenShares(o.MixServeGen, n)
	if err != nil {
		return nil, fmt.Errorf("mix: %w", err)
	}
	rep := &MixReport{Trace: o.MixTrace, ServeGen: o.MixServeGen, NoStream: o.MixNoStream,
		MaxInput: o.MixMaxInput, MaxOutput: o.MixMaxOutput, OutputScale: o.MixOutputScale,
		SLOms: ms(o.SLO), TPOTms: ms(o.MixTPOT), TimeoutS: o.ClientTimeout.Seconds(), DurationS: o.GoodputDuration.Seconds()}
	total := 0.0
	for _, s := range shares {
		total += s
	}
	h := &mixHarness{opt: o, rep: rep}
	for i, c := range clients {
		t := MixTenant{Name: fmt.Sprintf("t%d", i+1), Client: c, Share: shares[i] / total}
		if i == n-1 && n > 1 {
			t.Name, t.From = t.Name+" (newcomer)", 0.5
		}
		rep.Tenants = append(rep.Tenants, t)
		h.tenants = append(h.tenants, bench.Tenant{Name: t.Name, APIKey: fmt.Sprintf("sk-mix-t%d", i+1), Share: t.Share})
	}
	tr, err := bench.LoadTrace(o.MixTrace, bench.TraceOptions{TokenScale: 1, MaxInputTokens: o.MixMaxInput, MaxOutputTokens: o.MixMaxOutput})
	if err != nil {
		return nil, fmt.Errorf("mix: %w", err)
	}
	for i := range tr {
		tr[i].OutputTokens = max(int(float64(tr[i].OutputTokens)*o.MixOutputScale+0.5), 1)
	}
	need := 0.0
	for _, k := range o.MixLoads {
		need = max(need, k*o.GoodputDuration.Seconds())
	}
	if h.pool, err = poolOf(o, o.MixTrace, tr, need); err != nil {
		return nil, fmt.Errorf("mix: %w", err)
	}
	rep.MeanPrompt, rep.MeanOutput, rep.CapacityRPS = h.pool.meanP, h.pool.meanO, h.pool.capRPS
	return h, nil
}

// plan is load k's arrivals: the trace's, tenants dealt by share (the
// newcomer only from its start on), then a share dealt non-streamed.
func (h *mixHarness) plan(k float64) (mixPlan, error) {
	arr, _, _, err := h.pool.plan(0, k, h.opt.GoodputDuration)
	if err != nil {
		return mixPlan{}, fmt.Errorf("mix: %w", err)
	}
	from := h.opt.GoodputDuration
	for _, t := range h.rep.Tenants {
		if t.From > 0 {
			from = time.Duration(t.From * float64(h.opt.GoodputDuration))
		}
	}
	cut := len(arr)
	for i, a := range arr {
		if a.At >= from {
			cut = i
			break
		}
	}
	early := h.tenants
	if len(h.tenants) > 1 {
		early = h.tenants[:len(h.tenants)-1]
	}
	bench.AssignTenants(arr[:cut], early)
	bench.AssignTenants(arr[cut:], h.tenants)
	noStream, stream := benchkit.Deal(arr, h.opt.MixNoStream, h.opt.Seed)
	return mixPlan{stream: stream, noStream: noStream}, nil
}

// run runs one leg on fresh simulators and a fresh path.
func (h *mixHarness) run(ctx context.Context, plan mixPlan, k float64, regime, path string) (*MixLeg, error) {
	o := h.opt
	label := fmt.Sprintf("mix %gx %s %s", k, regime, path)
	o.prog.Leg("%s: %d streamed + %d non-streamed requests over %s", label, len(plan.stream), len(plan.noStream), o.GoodputDuration)
	wall := time.Now()
	rig, err := startRig(ctx, o, regime, path, 0, h.tenants)
	if err != nil {
		return nil, err
	}
	defer rig.Stop()
	smp := rig.Sample(ctx, sampleEvery, o.GoodputDuration)
	cfgs := make([]bench.Config, 2)
	for i, arr := range [][]bench.Arrival{plan.stream, plan.noStream} {
		cfgs[i] = newRunConfig(o, rig.Targets[0], label, arr)
		cfgs[i].Stream = i == 0
		cfgs[i].Tenants = h.tenants
		cfgs[i].BlockTokens = 0
	}
	recs, kept, err := benchkit.RunTogether(ctx, cfgs)
	ss := smp.Finish()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	sims, gateways := scrapeEnd(ctx, rig)
	l := &MixLeg{Load: k, Regime: regime, Path: path, KeptUp: kept}
	for i, arr := range [][]bench.Arrival{plan.stream, plan.noStream} {
		for _, r := range recs[i] {
			l.records = append(l.records, mixRecord{rec: r, arr: arr[r.Index], stream: i == 0})
		}
	}
	var flat []bench.Record
	for _, rs := range recs {
		flat = append(flat, rs...)
	}
	l.Why = whyOf(o, flat, ss, sims, gateways)
	l.count(h.rep, o.SLO, o.MixTPOT)
	l.WallS = time.Since(wall).Seconds()
	a := l.All
	o.prog.Printf("      in SLO %d of %d (late %d), refused with Retry-After %d, unannounced %d; by class: %s; by tenant and class (in SLO/late/refused at arrival/after queueing of offered):%s",
		a.InSLO, a.Offered, a.Late, a.RefusedWithRA, a.Unannounced, l.classText(), l.crossText())
	return l, nil
}

// count fills the leg's counts from its records.
func (l *MixLeg) count(rep *MixReport, slo, step time.Duration) {
	l.All = MixCount{Name: "all"}
	l.slo, l.step = slo, step
	l.Classes = make([]MixCount, len(mixClasses))
	for i, c := range mixClasses {
		l.Classes[i].Name = c
	}
	l.Tenants = make([]MixCount, len(rep.Tenants))
	for i, t := range rep.Tenants {
		l.Tenants[i].Name = t.Name
	}
	for _, m := range l.records {
		l.All.add(m, slo, step)
		for i, c := range mixClasses {
			if m.class() == c {
				l.Classes[i].add(m, slo, step)
			}
		}
		if t := m.rec.Tenant; t >= 0 && t < len(l.Tenants) {
			l.Tenants[t].add(m, slo, step)
		}
	}
	l.All.finish()
	l.crossCount(rep, slo, step)
	for i := range l.Classes {
		l.Classes[i].finish()
	}
	for i := range l.Tenants {
		l.Tenants[i].finish()
	}
}

func (l *MixLeg) classText() string {
	s := ""
	for i, c := range l.Classes {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %d/%d", c.Name, c.InSLO, c.Offered)
	}
	return s
}

// refusalKey is a refusal's RefusedBy key: its error code, "no code"
// without one. Sluice answers pool_saturated (503, Retry-After) for three
// causes a client handles alike (retry after the delay) but an operator
// does not, told apart by the message only:
//
//   - pool_saturated/estimate: the admission queue's estimate of the
//     request's wait exceeds the time left to its deadline, its tenant
//     within its share, or past the queue's delay target (admission
//     .Saturated at arrival or re-estimated in the queue; "are
//     saturated: estimated wait ..." or "... re-estimated at ...");
//   - pool_saturated/prefill: the same reason, a long prompt the
//     engines' prefill queue cannot start within its objective ("have
//     more prompts queued to prefill");
//   - pool_saturated/no_backend_slot: admitted, but at dispatch every
//     backend was at its concurrency limit and no slot freed within the
//     request's slot wait (proxy.ErrSaturated; "is at its concurrency
//     limit"): the queue's capacity and the backends' limits disagree.
//
// A pool_saturated whose message is none of these keeps its bare code.
func refusalKey(rec *bench.Record) string {
	if rec.Code != "pool_saturated" {
		return cmp.Or(rec.Code, "no code")
	}
	switch {
	case strings.Contains(rec.Message, "concurrency limit"):
		return "pool_saturated/no_backend_slot"
	case strings.Contains(rec.Message, "queued to prefill"):
		return "pool_saturated/prefill"
	case strings.Contains(rec.Message, "are saturated"):
		return "pool_saturated/estimate"
	}
	return rec.Code
}
