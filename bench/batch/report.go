package main

import (
	"fmt"
	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"io"
	"strings"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// Report is everything the benchmark measured; --json writes it.
type Report struct {
	benchkit.Run
	Setup Setup `json:"setup"`
	// Legs: A (interactive alone), B (with the batch), then any prototype
	// legs (--headroom).
	Legs    []*Leg   `json:"legs"`
	Targets []Target `json:"targets"` // on leg B
}

// Setup is the pool, the requests and the gateway configuration.
type Setup struct {
	Trace        string     `json:"trace,omitempty"`
	TokenScale   float64    `json:"token_scale,omitempty"`
	MeanPrompt   float64    `json:"interactive_mean_prompt"`
	MeanOutput   float64    `json:"interactive_mean_output"`
	Backends     int        `json:"backends"`
	Sim          sim.Config `json:"sim"`
	CapI         float64    `json:"capacity_interactive_rps"` // pool, formula
	CapB         float64    `json:"capacity_batch_rps"`       // pool, formula
	Load         float64    `json:"load_x_capacity"`
	Arrivals     int        `json:"interactive_arrivals"`
	DurationS    float64    `json:"duration_s"`
	SLOms        float64    `json:"slo_ttft_ms"`
	BatchSize    int        `json:"batch_requests"`
	BatchPrompt  int        `json:"batch_prompt_tokens"`
	BatchOutput  int        `json:"batch_output_tokens"`
	Workers      int        `json:"workers"`
	MaxConc      int        `json:"max_concurrency"`
	SluiceConfig []string   `json:"sluice_config_changes"`
}

func (h *harness) setup() Setup {
	o := h.opt
	s := Setup{MeanPrompt: h.meanP, MeanOutput: h.meanO, Backends: o.Backends, Sim: o.Sim, CapI: h.capI, CapB: h.capB,
		Load: o.Load, Arrivals: len(h.plan), DurationS: o.Duration.Seconds(), SLOms: float64(o.SLO) / 1e6,
		BatchSize: o.BatchSize, BatchPrompt: o.BatchPrompt, BatchOutput: o.BatchOutput, Workers: o.Workers, MaxConc: o.MaxConc}
	if o.Trace != "" {
		s.Trace, s.TokenScale = o.Trace, o.TokenScale
	}
	s.SluiceConfig = []string{
		"queue.data_dir: a fresh temporary directory per leg",
		fmt.Sprintf("queue.workers: %d (default %d)", o.Workers, config.Default().Queue.Workers),
		"log.access: false, shutdown_grace: 2s",
	}
	if o.Reserve >= 0 {
		s.SluiceConfig = append(s.SluiceConfig, fmt.Sprintf("admission.spare_reserve: %g", o.Reserve))
	}
	if o.MaxConc > 0 {
		s.SluiceConfig = append(s.SluiceConfig, fmt.Sprintf("models[0].backends[*].max_concurrency: %d (static, = the simulator's slots, instead of the adaptive limit)", o.MaxConc))
	}
	return s
}

// Figures are the two targets' measurements and what they derive from.
type Figures struct {
	P50A, P50B, P99A, P99B float64 // interactive TTFT, ms
	P99Ratio               float64 // P99B / P99A

	// The spare-capacity window: from the moment the batch was in
	// progress (POST /v1/batches answered) to W.
	FromS, ToS float64
	// InteractiveRPS and BatchRPS are the requests of each kind the
	// backends completed per second in the window (leg B).
	InteractiveRPS float64
	BatchRPS       float64
	// InteractiveShare is InteractiveRPS over the pool's capacity for the
	// interactive mix; SpareRPS = CapB x (1 - InteractiveShare) is what is
	// left, in batch requests per second; SpareUsed = BatchRPS / SpareRPS.
	InteractiveShare float64
	SpareRPS         float64
	SpareUsed        float64
	// SpareUsedWholeW counts the batch over all of [0, W), including the
	// time the batch was being enqueued.
	SpareUsedWholeW float64
	// The same against the measured ceiling: leg B's batch rate alone
	// after the interactive load, instead of the formula's CapB (0 if not
	// measured).
	SpareRPSMeasured  float64
	SpareUsedMeasured float64
	// Slot view: pool occupancy over W alone (A) and with the batch (B),
	// and (B - A) / (1 - A): the share of slot-time idle in A that the
	// batch filled in B.
	OccA, OccB    float64
	SlotSpareUsed float64
	BatchS        float64 // POST /v1/batches to terminal status
	BatchStatus   string
}

func (h *harness) figures(a, b *Leg, ceiling float64) *Figures {
	f := &Figures{P50A: a.Interactive.TTFT.P50, P50B: b.Interactive.TTFT.P50, P99A: a.Interactive.TTFT.P99, P99B: b.Interactive.TTFT.P99}
	if f.P99A > 0 {
		f.P99Ratio = f.P99B / f.P99A
	}
	f.OccA, f.OccB = a.Pool.Occupancy, b.Pool.Occupancy
	if f.OccA < 1 {
		f.SlotSpareUsed = (f.OccB - f.OccA) / (1 - f.OccA)
	}
	br := b.Batch
	f.BatchS, f.BatchStatus = br.CompletedS, br.Status
	w := h.opt.Duration.Seconds()
	spare := func(from, to float64) (irps, brps, share, spare float64) {
		if to <= from {
			return 0, 0, 0, 0
		}
		inter := float64(interactiveDone(b.Bench, from, to))
		all := finishedAt(b.Samples, to) - finishedAt(b.Samples, from)
		irps, brps = inter/(to-from), max(all-inter, 0)/(to-from)
		share = irps / h.capI
		return irps, brps, share, h.capB * (1 - share)
	}
	f.FromS, f.ToS = br.CreateS, w
	var sp float64
	f.InteractiveRPS, f.BatchRPS, f.InteractiveShare, sp = spare(f.FromS, f.ToS)
	f.SpareRPS = sp
	if sp > 0 {
		f.SpareUsed = f.BatchRPS / sp
	}
	if _, whole, _, sp0 := spare(0, w); sp0 > 0 {
		f.SpareUsedWholeW = whole / sp0
	}
	if ceiling > 0 {
		f.SpareRPSMeasured = ceiling - f.InteractiveRPS*h.capB/h.capI
		if f.SpareRPSMeasured > 0 {
			f.SpareUsedMeasured = f.BatchRPS / f.SpareRPSMeasured
		}
	}
	return f
}

func (f *Figures) measuredText() string {
	return benchkit.OrDash(f.SpareUsedMeasured > 0, "%.0f%%", 100*f.SpareUsedMeasured)
}

// Target is one of issue 5's targets and the measurement against it.
type Target = benchkit.Target

func targets(f Figures) []Target {
	return []Target{
		{Name: "interactive p99 TTFT with the batch <= 1.10x without",
			Measured: fmt.Sprintf("%s vs %s: %.2fx", benchkit.MsText(f.P99B), benchkit.MsText(f.P99A), f.P99Ratio), Pass: f.P99Ratio > 0 && f.P99Ratio <= targetTTFTRise},
		{Name: "the batch uses >= 80% of the spare capacity",
			Measured: fmt.Sprintf("%.0f%% (%.1f of %.1f batch req/s)", 100*f.SpareUsed, f.BatchRPS, f.SpareRPS), Pass: f.SpareUsed >= targetSpareUsed},
	}
}

func sText(v float64) string { return benchkit.OrDash(v > 0, "%.1f s", v) }

func writeMarkdown(w io.Writer, rep *Report) error {
	ew := &benchkit.ErrWriter{W: w}
	writeSetup(ew, rep)
	writeInteractive(ew, rep)
	writeBatch(ew, rep)
	ew.Printf("### Targets (issue 5), on leg B\n\n")
	ew.Targets("target", rep.Targets, benchkit.PassFail)
	writeSpare(ew, rep)
	if len(rep.Legs) > 2 {
		writeExperiments(ew, rep)
	}
	writeNotes(ew, rep)
	return ew.Err
}

// writeSetup writes the title and what the legs ran on.
func writeSetup(ew *benchkit.ErrWriter, rep *Report) {
	p := ew.Printf
	s, sc, br := rep.Setup, rep.Setup.Sim, rep.Legs[1].Batch
	p("## Batch beside interactive traffic (issue 5 §5)\n\n")
	ew.RunHeader(rep.Run)
	p("- Pool: %d simulators (`internal/sim`), each %d slots, KV %d tokens, waiting queue %d, prefill %.0f tok/s, decode step %s + %s per sequence: %d slots.\n",
		s.Backends, sc.Slots, sc.KVTokens, sc.MaxWaiting, sc.PrefillTokensPerSec, sc.DecodeStepBase, sc.DecodeStepPerSeq, s.Backends*sc.Slots)
	p("- Interactive: %d requests at uniformly random times over %gs (a Poisson process conditioned on its count): %.1f req/s = %g x capacity; streaming, open loop, API key `%s`. ",
		s.Arrivals, s.DurationS, float64(s.Arrivals)/s.DurationS, s.Load, interactiveKey)
	if s.Trace != "" {
		p("Sizes drawn from `%s` (Azure LLM inference trace, conversation, 2023; CC-BY-4.0), tokens scaled by %g: mean %.0f prompt / %.0f output tokens.\n",
			s.Trace, s.TokenScale, s.MeanPrompt, s.MeanOutput)
	} else {
		p("%.0f prompt / %.0f output tokens each.\n", s.MeanPrompt, s.MeanOutput)
	}
	p("- Batch: %d chat completions of %d prompt / %d output tokens (unique prompts: no prefix-cache or response-cache hits), %.1f MB of JSONL, uploaded with `POST /v1/files` and started with `POST /v1/batches` (API key `%s`) at the start of the leg.\n",
		s.BatchSize, s.BatchPrompt, s.BatchOutput, float64(br.InputBytes)/1e6, batchKey)
	p("- Capacity (`sim.Config.Capacity`, pool): **%.1f req/s** for the interactive mix, **%.1f req/s** for the batch request.\n", s.CapI, s.CapB)
	p("- Sluice: `config.Default()` (embedded NATS JetStream queue, in-gateway workers behind `gateway.JobGate`) except %s.\n", strings.Join(s.SluiceConfig, "; "))
	p("- Legs: A runs the interactive load alone; B the same arrivals with the batch created at t = 0. Each leg has fresh simulators, a fresh gateway and an empty queue. The interactive load stops after %gs; the batch then runs alone until done.", s.DurationS)
	if len(rep.Legs) > 2 {
		p(" Legs C and D are experiments, not Sluice's behaviour: they repeat B with the gateway's workers off and as many workers started by the benchmark, running jobs through the gateway's own executor (`gateway.JobExecutor`) behind prototypes in `bench/batch/proto.go`. " +
			"C*n* lets a job start only while more than *n* slots are free and nothing waits (Sluice's gate is this with *n* = 0); D keeps Sluice's rule and, while interactive requests wait in Sluice's queue, cancels the youngest running job for each (the backend frees its slot at once; the job goes back to the queue as busy, not counted as an attempt).")
	}
	p("\n\n")
}

// writeInteractive writes what the interactive clients saw in each leg.
func writeInteractive(ew *benchkit.ErrWriter, rep *Report) {
	ew.Printf("### Interactive traffic\n\n")
	ew.TableHead(benchkit.Cols("leg", "ok>", "refused>", "failed>", "TTFT p50>", "TTFT p90>", "TTFT p99>", "ITL p50>", "ITL p99>",
		"pool slots busy>", "waited in Sluice's queue (> 1 ms), mean wait>"))
	ms := benchkit.MsText
	for _, l := range rep.Legs {
		in := l.Interactive
		ew.Row(l.Name, fmt.Sprint(in.OK), fmt.Sprint(in.Refused), fmt.Sprint(in.Failed), ms(in.TTFT.P50), ms(in.TTFT.P90), "**"+ms(in.TTFT.P99)+"**",
			ms(in.ITL.P50), ms(in.ITL.P99), fmt.Sprintf("%.0f%%", 100*l.Pool.Occupancy),
			fmt.Sprintf("%.1f%%, %s", 100*l.Gateway.InteractiveWaitedShare, ms(l.Gateway.InteractiveWaitMeanMs)))
	}
	ew.Printf("\nPool slots busy: mean share of the %d slots decoding during the %gs of interactive load (the simulators' `vllm:num_requests_running`, sampled every 250 ms). "+
		"Waited: the interactive class's `sluice_queue_wait_seconds` at the end of the leg.\n\n", rep.Legs[0].Pool.Slots, rep.Setup.DurationS)
}

// writeBatch writes how the batch went in each leg that ran it.
func writeBatch(ew *benchkit.ErrWriter, rep *Report) {
	ew.Printf("### The batch\n\n")
	ew.TableHead(benchkit.Cols("leg", "upload>", "POST /v1/batches (enqueue)>", "done by W (gateway / backends)>", "rate beside interactive>",
		"rate alone (slots busy)>", "all counted>", "completed>", "result"))
	for _, l := range rep.Legs[1:] {
		x := l.Batch
		alone := benchkit.OrDash(x.AloneRPS > 0, "%.1f req/s (%.0f%%)", x.AloneRPS, 100*x.AloneOccupancy)
		ew.Row(l.Name, sText(x.UploadS), sText(x.CreateS), fmt.Sprintf("%.0f / %.0f", x.DoneAtW, x.BackendDoneAtW), fmt.Sprintf("%.1f req/s", l.Figures.BatchRPS),
			alone, sText(x.CountedS), "**"+sText(x.CompletedS)+"**", fmt.Sprintf("%s: %d completed, %d failed, %d output lines", x.Status, x.Completed, x.Failed, x.OutputLines))
	}
	ew.Printf("\nTimes are from `POST /v1/batches` (the upload comes before). Done by W: requests finished when the interactive load ended, by the batch's `request_counts` and by the backends' completion counters minus the interactive requests. "+
		"Rate beside interactive: batch requests the backends completed per second from the batch's start to W. "+
		"Rate alone: the same from one second after the interactive load drained (%.0f s in B) until 95%% of the batch was done.\n\n", rep.Legs[1].Batch.AloneFromS)
}

// writeSpare explains the spare-capacity target's figures.
func writeSpare(ew *benchkit.ErrWriter, rep *Report) {
	p := ew.Printf
	s, f, br := rep.Setup, rep.Legs[1].Figures, rep.Legs[1].Batch
	p("\nSpare capacity, as measured: from the batch's start (%.1f s, when `POST /v1/batches` returned) to W = %gs, the backends completed %.1f interactive req/s, %.0f%% of the pool's capacity for that mix, which leaves %.0f%% of the pool: %.1f batch req/s by the formula. "+
		"The batch completed %.1f req/s in that window, **%.0f%% of the spare capacity**. ",
		f.FromS, s.DurationS, f.InteractiveRPS, 100*f.InteractiveShare, 100*(1-f.InteractiveShare), f.SpareRPS, f.BatchRPS, 100*f.SpareUsed)
	p("Counted over all of [0, W), enqueueing included: %.0f%%. ", 100*f.SpareUsedWholeW)
	if f.SpareUsedMeasured > 0 {
		p("Against the measured ceiling instead of the formula (the batch's rate alone after W, %.1f req/s at %.0f%% of the slots busy, minus the interactive load in batch-request equivalents): %.0f%%. ", br.AloneRPS, 100*br.AloneOccupancy, 100*f.SpareUsedMeasured)
	}
	p("Slot view: the pool's slots were %.0f%% busy in A and %.0f%% in B, so the batch filled %.0f%% of the slot-time A left idle.\n\n",
		100*f.OccA, 100*f.OccB, 100*f.SlotSpareUsed)
}

// writeExperiments compares the prototype legs with leg B.
func writeExperiments(ew *benchkit.ErrWriter, rep *Report) {
	ew.Printf("### Experiments: leaving room for interactive traffic (prototypes)\n\n")
	ew.TableHead(benchkit.Cols("leg", "interactive TTFT p99 (vs A)>", "waited in Sluice's queue>", "spare used (formula)>", "spare used (B's measured ceiling)>",
		"slot-time filled>", "jobs preempted>", "batch done by W>", "batch completed>"))
	for _, l := range rep.Legs[1:] {
		x := l.Figures
		pre := benchkit.OrDash(l.Preempt, "%d", l.Preempted)
		ew.Row(l.Name, fmt.Sprintf("%s (%.2fx)", benchkit.MsText(x.P99B), x.P99Ratio), fmt.Sprintf("%.1f%%", 100*l.Gateway.InteractiveWaitedShare),
			fmt.Sprintf("%.0f%%", 100*x.SpareUsed), x.measuredText(), fmt.Sprintf("%.0f%%", 100*x.SlotSpareUsed), pre,
			fmt.Sprintf("%.0f", l.Batch.BackendDoneAtW), sText(l.Batch.CompletedS))
	}
	ew.Printf("\n")
}

// writeNotes lists what to read the figures with: generator lag, gateway
// warnings, job executions and refusals.
func writeNotes(ew *benchkit.ErrWriter, rep *Report) {
	p := ew.Printf
	var notes []string
	for _, l := range rep.Legs {
		if !l.Interactive.KeptUp {
			notes = append(notes, fmt.Sprintf("the load generator fell behind its plan in %s (lag p99 %s); treat its latencies with care", l.Name, benchkit.MsText(l.Interactive.LagP99ms)))
		}
		if l.Warnings > 0 {
			notes = append(notes, fmt.Sprintf("the gateway logged %d warnings in %s, first: `%s`", l.Warnings, l.Name, l.WarningSample[0]))
		}
	}
	for _, l := range rep.Legs[1:] {
		g := l.Gateway
		n := fmt.Sprintf("%s: job executions %.0f, sent back to the queue %.0f, dead-lettered %.0f; jobs preempted by interactive requests (`sluice_queue_preempted_total`, run again in place, their partial work lost) %.0f",
			l.Name, g.JobsExecuted, g.JobsRetried, g.JobsDead, g.JobsPreempted)
		if g.JobsPreempted > 0 {
			n += fmt.Sprintf(", having run %.1f slot-seconds (`sluice_queue_preempted_seconds_total`; %.0f ms each on average)", g.PreemptedHeldS, 1000*g.PreemptedHeldS/g.JobsPreempted)
		}
		if len(g.Rejections) > 0 {
			n += "; admission refusals (a job that loses the race for a free slot is refused and tried again, not counted as an attempt): " + benchkit.ByValue(g.Rejections)
		}
		notes = append(notes, n)
	}
	p("Notes:\n\n")
	for _, n := range notes {
		p("- %s.\n", n)
	}
	p("\n")
}
