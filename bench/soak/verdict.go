package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// threshold is how much a series may grow over the second half of the run
// (its least-squares slope times the half's length) before the soak calls
// it a leak: the larger of floor and frac of the series' median there.
//
// Why these: under steady load the series swing with what is in flight (a
// request holds 2–4 goroutines, a socket or two, its buffers), so a fit over
// ~25 samples still moves by a few units; a leak worth finding is one per
// reload (25 per half at one reload each 30 s: the goroutine floor), one
// per hundred requests (~20 at 3 req/s) or a heap that keeps what it
// served (megabytes: a cached answer is kilobytes, the half sees
// thousands). frac keeps large series (RSS, heap, cache bytes) from
// failing on a percent of noise.
type threshold struct {
	floor, frac float64
}

func thresholdFor(name string) threshold {
	switch name {
	case sGoroutines:
		return threshold{20, 0.10}
	case sFDs, sFDsLessIdle:
		return threshold{8, 0.10}
	case sBackLessIdle, sOpenLessIdle:
		// The connections to the backends less the idle pool: those
		// carrying a request swing with what is in flight at the sample
		// (bursts' stragglers, stalled streams), a few units.
		return threshold{6, 0.10}
	case sRSS:
		return threshold{16 << 20, 0.10}
	case sHeap:
		return threshold{8 << 20, 0.10}
	}
	switch {
	case strings.HasSuffix(name, "_bytes"):
		// Read-ahead and body buffers come in 16–64 KiB per request: a
		// few slow readers or uploads in flight at a sample are 256 KiB.
		return threshold{256 << 10, 0.10}
	case strings.HasSuffix(name, "_tokens"):
		// A request in flight holds its prompt and max_tokens (up to ~600
		// here): two of them.
		return threshold{1200, 0.10}
	}
	return threshold{2, 0.10}
}

// slope is the least-squares slope of ys against xs (units per x unit).
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// isSignal tells the gauges that are estimates, rates and limits (they
// follow the traffic and the controllers, up or down, and hold nothing)
// from those that count what the gateway holds: connections, requests,
// queued work, bytes, entries. Only the latter can leak; the signals are
// printed, not judged. The tenant ramp's base and proven slots are such
// estimates too (a recent in-use peak; the most slots at which a stream
// started promptly in the last 10-20 minutes): they follow the bursts'
// peaks, and a 5-minute run FAILed on ramp_proven 5 -> 28 (growth 9.6
// against 2.8) while the queue held nothing (in use 2 -> 3, waiting 0).
func isSignal(name string) bool {
	for _, s := range []string{"per_second", "ewma", "_ratio", "desired_backends", "_capacity", "delay_target",
		"drain_rate", "_state", "congested", "machine_", "ramp_base", "ramp_proven"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// bounds are the resource gauges with a bound of their own on /metrics:
// filling up to it is the design (a cache or memo warming), so they are
// judged against the bound, not the slope.
// The job store keeps every job's record for queue.retention (a week) up
// to queue.max_store_bytes: a soak sees it fill, by design.
// The lean client's idle pool (1,024 per backend, 4,096 in all) keeps
// the last 90 s's peak concurrency: a warm pool grows with the run's
// peaks, by design (withoutIdlePool).
var bounds = map[string]string{
	"sluice_request_memo_bodies": "sluice_request_memo_capacity",
	"sluice_jobs_store_bytes":    "sluice_jobs_store_limit_bytes",
	mIdle:                        "sluice_upstream_idle_connections_limit",
}

// lessIdle are the series that hold the idle pool (connections, fds): printed,
// and judged as the series named here, without it (withoutIdlePool).
var lessIdle = map[string]string{sBackConns: sBackLessIdle, mOpen: sOpenLessIdle, sFDs: sFDsLessIdle}

// fixedBounds are the bounded gauges whose bound is not on /metrics: the
// gateway's response id → backend map holds at most 100k ids
// (internal/gateway/respowners.go, defaultResponseIDs) and grows all run
// by design (24 h TTL), so a slope would call it a leak.
//
// The tenant ramp remembers at most 4,096 ramping tenants per model
// (internal/admission): how many ramp at a sample follows which of the
// mix's dozen addresses were busy beside others, and a 5-minute run
// FAILed on 0 -> 7 (growth 4.8 against 2) with nothing held
// (sluice_queue_ramp_held 0). Judged against the bound of one model.
var fixedBounds = map[string]float64{"sluice_responses_ids": 100_000, "sluice_queue_ramping_tenants": 4096}

// boundOf is series n's bound in sample s, if it has one.
func boundOf(n string, s sample) (float64, bool) {
	if b, ok := bounds[n]; ok {
		return s.values[b], true
	}
	b, ok := fixedBounds[n]
	return b, ok
}

// The backends' outstanding tokens are the holds of the requests in
// flight on them (940-1,710 tokens each in the soak's mix, 8,606 with
// five): their sum swings with how many are on the backends at the
// sample, so its slope over the half FAILed runs with no leak (soakfix:
// 1,258 against 1,200; the lead's 25-minute run of 2026-12-06: 1,924,
// and 0 at idle after). restartcheck's fit (tokens = a + hold x in
// flight + rate x time) did not help there: it assumes one hold for all,
// and a queue burst's streams hold ~90 tokens each where the mix's
// requests hold 300-1,700, so the fit's hold was the bursts' (77 in a
// 5-minute run), the floor applied. It also held apart the client's
// requests (sluice_inflight_requests: queued and cached ones included),
// where the tokens are the holds of those on the backends.
//
// What a leak of them looks like, and what is judged now:
//   - tokens never given back stay when the requests are gone: at the
//     idle sample after the run they must be back to the one before
//     (0: judgeIdle), whatever their size;
//   - under load they are a hold per request on the backends that grows:
//     the tokens per request in flight on a backend (sluice_backend_inflight,
//     the same scrape; at a sample with none there, the tokens themselves,
//     all of them leaked), fitted over every sample by the median of the
//     pairwise slopes (Theil-Sen: a few samples of long prompts or of one
//     request in flight do not move it), may grow by at most one request's
//     hold (their median, 1,200 at least) over the run.
//
// A sample with neither tokens nor a request on a backend says nothing of
// the hold and is left out of the fit.
const (
	mTokens       = "sluice_backend_outstanding_tokens"
	mBackInflight = "sluice_backend_inflight"
	mInflight     = "sluice_inflight_requests"
)

// tokensPerBackendRequest fits the outstanding tokens per request in
// flight on the backends over samples: the Theil-Sen slope per minute and
// the median hold per request (samples with a request in flight only).
func tokensPerBackendRequest(samples []sample) (perMin, hold float64) {
	var ts, qs, holds []float64
	for _, s := range samples {
		tok, n := s.values[mTokens], s.values[mBackInflight]
		if n <= 0 && tok == 0 {
			continue
		}
		q := tok / math.Max(n, 1)
		ts, qs = append(ts, s.at.Minutes()), append(qs, q)
		if n > 0 {
			holds = append(holds, q)
		}
	}
	return theilSen(ts, qs), median(holds)
}

// theilSen is the median of the slopes between every pair of points with
// distinct xs (0 with fewer than two such points).
func theilSen(xs, ys []float64) float64 {
	var ss []float64
	for i := range xs {
		for j := i + 1; j < len(xs); j++ {
			if dx := xs[j] - xs[i]; dx != 0 {
				ss = append(ss, (ys[j]-ys[i])/dx)
			}
		}
	}
	if len(ss) == 0 {
		return 0
	}
	slices.Sort(ss)
	if len(ss)%2 == 1 {
		return ss[len(ss)/2]
	}
	return (ss[len(ss)/2-1] + ss[len(ss)/2]) / 2
}

// seriesVerdict is one row of the verdict table.
type seriesVerdict struct {
	name                  string
	first, last, min, max float64
	perMin                float64 // slope over the second half, per minute
	growth, allowed       float64 // over the second half
	pass                  bool
	judged                string // "slope", "bound", "pool" (judged less the idle pool) or "" (a signal: printed only); mTokens's slope is per request in flight on the backends, over the whole run
}

// judge fits every series over the second half of the samples.
func judge(samples []sample) []seriesVerdict {
	if len(samples) == 0 {
		return nil
	}
	names := map[string]bool{}
	for _, s := range samples {
		for n := range s.values {
			names[n] = true
		}
	}
	half := samples[len(samples)/2:]
	span := (half[len(half)-1].at - half[0].at).Minutes()
	var out []seriesVerdict
	for n := range names {
		v := seriesVerdict{name: n, min: math.Inf(1), max: math.Inf(-1)}
		for i, s := range samples {
			x := s.values[n]
			if i == 0 {
				v.first = x
			}
			v.last = x
			v.min, v.max = math.Min(v.min, x), math.Max(v.max, x)
		}
		var xs, ys []float64
		for _, s := range half {
			xs = append(xs, s.at.Minutes())
			ys = append(ys, s.values[n])
		}
		t := thresholdFor(n)
		v.allowed = math.Max(t.floor, t.frac*median(ys))
		v.perMin = slope(xs, ys)
		v.growth = v.perMin * span
		if n == mTokens {
			var hold float64
			v.perMin, hold = tokensPerBackendRequest(samples)
			v.growth = v.perMin * (samples[len(samples)-1].at - samples[0].at).Minutes()
			v.allowed = math.Max(t.floor, hold)
		}
		v.pass, v.judged = true, ""
		switch bound, ok := boundOf(n, samples[len(samples)-1]); {
		case ok:
			// Projected to twice the run, it stays within its bound.
			v.allowed, v.judged = bound, "bound"
			v.pass = v.allowed > 0 && v.last+math.Max(v.growth, 0)*2 <= v.allowed
		case lessIdle[n] != "":
			v.judged = "pool"
		case !isSignal(n):
			v.judged = "slope"
			v.pass = v.growth <= v.allowed
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return rank(out[i].name) < rank(out[j].name) })
	return out
}

// rank orders the table: the process series first, then the gauges by name.
func rank(name string) string {
	if i := slices.Index([]string{sGoroutines, sFDs, sFDsLessIdle, sBackConns, sBackLessIdle, sRSS, sHeap}, name); i >= 0 {
		return fmt.Sprint(i)
	}
	return "z" + name
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// printSamples writes the samples as a table: one row per sample, the
// process series only (every gauge's first/last/max is in the verdict).
func printSamples(w io.Writer, samples []sample, notes map[int]string) {
	fmt.Fprintf(w, "%8s %10s %5s %6s %8s %8s %8s %8s  %s\n", "t", "goroutines", "fds", "bconns", "rss_MiB", "heap_MiB", "inflight", "queued", "events")
	for i, s := range samples {
		v := s.values
		fmt.Fprintf(w, "%8s %10.0f %5.0f %6.0f %8.1f %8.1f %8.0f %8.0f  %s\n", s.at.Round(time.Second), v[sGoroutines], v[sFDs], v[sBackConns],
			v[sRSS]/(1<<20), v[sHeap]/(1<<20), v["sluice_inflight_requests"], v["sluice_queue_depth"], notes[i])
	}
}

// printVerdict writes one row per series and returns whether all passed.
func printVerdict(w io.Writer, vs []seriesVerdict) bool {
	ok := true
	fmt.Fprintf(w, "%-48s %12s %12s %12s %12s %12s %12s  %s\n", "series", "first", "last", "max", "slope/min", "growth(2nd half)", "allowed", "verdict")
	for _, v := range vs {
		verdict := "PASS"
		switch {
		case v.judged == "":
			verdict = "(signal)"
		case v.judged == "pool":
			verdict = "(with the idle pool: see " + lessIdle[v.name] + ")"
		case !v.pass:
			verdict, ok = "FAIL", false
		case v.name == mTokens:
			verdict = "PASS (per request on the backends, whole run)"
		case v.judged == "bound":
			verdict = "PASS (within its bound)"
		}
		fmt.Fprintf(w, "%-48s %12s %12s %12s %12s %12s %12s  %s\n", v.name, num(v.first), num(v.last), num(v.max),
			num(v.perMin), num(v.growth), num(v.allowed), verdict)
	}
	return ok
}

func num(x float64) string {
	a := math.Abs(x)
	switch {
	case a >= 1<<20:
		return fmt.Sprintf("%.1fMi", x/(1<<20))
	case a >= 100 || x == math.Trunc(x):
		return fmt.Sprintf("%.0f", x)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", x), "0"), ".")
}
