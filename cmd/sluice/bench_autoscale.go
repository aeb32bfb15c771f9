package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/forecast"
	"github.com/sluice-gw/sluice/internal/scalesim"
	"github.com/sluice-gw/sluice/internal/scaling"
	"github.com/sluice-gw/sluice/internal/sim"
)

// runBenchAutoscale replays days of a ServeGen rate trace, compressed,
// against a simulated pool under three controllers (fixed, reactive HPA,
// predictive) and prints one line per controller. Contract relied on by
// docs/BENCHMARKS.md §12:
//
//	sluice bench autoscale -servegen DIR -lengths AZURE_CSV [-start-day 8] [-days 2] [-compress 60] [-svg FILE]
func runBenchAutoscale(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench autoscale", "-servegen DIR -lengths AZURE_CSV [flags]", stderr)
	dir := fs.String("servegen", "", "ServeGen folder: one CSV per client, 10-minute windows (required)")
	lengths := fs.String("lengths", "", "Azure LLM trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens) to draw request lengths from (required)")
	startDay := fs.Int("start-day", 8, "first replayed day (1-based); the days before it warm the forecaster, walking forward")
	days := fs.Int("days", 2, "days replayed")
	compress := fs.Float64("compress", 60, "trace seconds per simulated second (arrivals, cold starts and controller periods; not service times)")
	peak := fs.Float64("peak-servers", 12, "requests are sampled so that the replay's busiest window needs this many servers at their nominal rate")
	cold := fs.Duration("cold-start", 3*time.Minute, "trace time from adding a server to its first request")
	syncPeriod := fs.Duration("sync", 15*time.Second, "controller period, trace time (the HPA's --horizontal-pod-autoscaler-sync-period)")
	stab := fs.Duration("stabilisation", 5*time.Minute, "HPA scale-down stabilisation window, trace time")
	tol := fs.Float64("tolerance", 0.1, "HPA tolerance")
	targets := fs.String("targets", "0.5,0.6,0.7,0.8,0.9", "HPA utilisation targets swept; the one with the fewest SLO-violation minutes (then the lowest cost) is the reactive column")
	slo := fs.Duration("slo", 2*time.Second, "time to first token a request should get (not compressed)")
	maxWait := fs.Duration("max-wait", 10*time.Second, "gateway queue limit: a request waiting longer is refused (not compressed)")
	headroom := fs.Float64("headroom", scaling.DefaultHeadroom, "predictive and fixed: capacity kept free above the demand (scaling.headroom)")
	lead := fs.Duration("lead", 0, "predictive: forecast lead, trace time (scaling.lead; 0 = the cold start)")
	hold := fs.Duration("hold", 5*time.Minute, "predictive: scale-in hold, trace time (scaling.scale_in_hold)")
	seed := fs.Uint64("seed", 1, "arrivals and lengths")
	svg := fs.String("svg", "", "write a plot of demand, forecast and servers per controller to this SVG file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" || *lengths == "" {
		fs.Usage()
		return errors.New("-servegen and -lengths are required")
	}
	if *lead == 0 {
		*lead = *cold
	}
	hpaTargets, err := parseTargets(*targets)
	if err != nil {
		return err
	}
	rates, window, err := bench.LoadServeGenDir(*dir)
	if err != nil {
		return err
	}
	perDay := int(24 * time.Hour / window)
	from, to := (*startDay-1)*perDay, (*startDay-1+*days)*perDay
	if *startDay < 2 || *days < 1 || to > len(rates) {
		return fmt.Errorf("-start-day %d -days %d: the trace has %d days; at least one day must precede the replay", *startDay, *days, len(rates)/perDay)
	}
	w := &scalesim.Workload{Warm: rates[:from], Rates: rates[from:to], Window: window, Compress: *compress, Seed: *seed}
	if w.Lengths, err = loadLengths(*lengths); err != nil {
		return err
	}
	srv := sim.Config{}
	mu := w.ServiceRate(srv)
	top := 0.0
	for _, r := range w.Rates {
		top = max(top, r)
	}
	if !(top > 0) || !(mu > 0) || !(*peak > 0) {
		return errors.New("bench autoscale: the replayed days carry no traffic")
	}
	w.Sample = *peak * mu / (top * *compress)
	if err := w.Validate(); err != nil {
		return fmt.Errorf("bench autoscale: %w", err)
	}
	need := func(rate float64) float64 { return rate * w.Sample * *compress / mu }
	mean := 0.0
	for _, r := range w.Rates {
		mean += r / float64(len(w.Rates))
	}
	opt := scalesim.Options{Server: srv, ColdStart: *cold, Sync: *syncPeriod, SLO: *slo, MaxWait: *maxWait,
		InitialServers: int(math.Ceil(need(w.Rates[0]) * (1 + *headroom)))}

	fc, err := forecast.New(forecast.Config{Interval: window})
	if err != nil {
		return err
	}
	t0 := time.Unix(0, 0)
	for i, r := range w.Warm {
		fc.Observe(t0.Add(time.Duration(i)*window), forecast.Key{Model: "m"}, r*window.Seconds(), 0)
	}
	replayAt := t0.Add(time.Duration(len(w.Warm)) * window)
	fc.Advance(replayAt)

	ctls := []scalesim.Controller{
		scalesim.Fixed{N: int(math.Ceil(need(mean) * (1 + *headroom)))},
		scalesim.NewPredictive(fc, replayAt, w, scaling.Policy{Headroom: *headroom, PriorSlotRate: mu / float64(sim.DefaultSlots)},
			*lead, *hold, *slo, mu),
		scalesim.NewPredictive(nil, replayAt, w, scaling.Policy{Headroom: *headroom, PriorSlotRate: mu / float64(sim.DefaultSlots)},
			*lead, *hold, *slo, mu),
	}
	for _, t := range hpaTargets {
		ctls = append(ctls, &scalesim.HPA{Target: t, Tolerance: *tol, Window: time.Duration(float64(*stab) / *compress)})
	}
	results := make([]*scalesim.Result, len(ctls))
	errs := make([]error, len(ctls))
	var wg sync.WaitGroup
	for i, c := range ctls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := opt
			if _, fixed := c.(scalesim.Fixed); fixed {
				o.InitialServers = c.Desired(scalesim.View{})
			}
			results[i], errs[i] = scalesim.Run(w, o, c)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	sums := make([]scalesim.Summary, len(results))
	for i, r := range results {
		sums[i] = scalesim.Summarise(w, r, *slo, need)
	}
	fmt.Fprintf(stdout, "autoscale days=%d-%d (warmed on days 1-%d) compress=%g sample=%.4g service_rate=%.2f/s/server peak_need=%.1f mean_need=%.1f servers cold_start=%s lead=%s slo=%s requests=%d\n",
		*startDay, *startDay+*days-1, *startDay-1, *compress, w.Sample, mu, need(top), need(mean), formatHorizon(*cold), formatHorizon(*lead), *slo, sums[0].Requests)
	const firstHPA = 3
	best := firstHPA
	for i := firstHPA; i < len(sums); i++ {
		fmt.Fprintf(stdout, "hpa_sweep target=%.2f %s\n", hpaTargets[i-firstHPA], summaryFields(sums[i]))
		if s, b := sums[i], sums[best]; s.ViolationMinutes < b.ViolationMinutes || s.ViolationMinutes == b.ViolationMinutes && s.ServerMinutes < b.ServerMinutes {
			best = i
		}
	}
	table := []scalesim.Summary{sums[0], sums[best], sums[1], sums[2]}
	names := []string{"fixed", fmt.Sprintf("reactive(hpa_target=%.2f)", hpaTargets[best-firstHPA]), "predictive", "signal-only(no_forecast)"}
	for i, s := range table {
		fmt.Fprintf(stdout, "autoscale controller=%s %s\n", names[i], summaryFields(s))
	}
	r, p := table[1], table[2]
	cut := 1 - float64(p.ViolationMinutes)/math.Max(float64(r.ViolationMinutes), 1)
	cost := p.ServerMinutes / r.ServerMinutes
	fmt.Fprintf(stdout, "autoscale predictive_vs_reactive violation_minutes=%+.0f%% server_minutes=%.0f%% target=(<=-50%% at <=110%%) met=%t\n",
		-100*cut, 100*cost, cut >= 0.5 && cost <= 1.10)
	if *svg != "" {
		return writeAutoscaleSVG(*svg, w, need, []*scalesim.Result{results[0], results[best], results[1]}, names)
	}
	return nil
}

func summaryFields(s scalesim.Summary) string {
	peaks := make([]string, len(s.PeakReady))
	for i, m := range s.PeakReady {
		peaks[i] = "never"
		if !math.IsNaN(m) {
			peaks[i] = fmt.Sprintf("%.0fm", m)
		}
	}
	return fmt.Sprintf("within_slo=%.2f%% refused=%.2f%% p99_ttft=%.2fs server_minutes=%.0f violation_minutes=%d peak_ready=%s",
		100*float64(s.WithinSLO)/float64(max(s.Requests, 1)), 100*float64(s.Refused)/float64(max(s.Requests, 1)),
		s.P99TTFT.Seconds(), s.ServerMinutes, s.ViolationMinutes, strings.Join(peaks, ","))
}

func parseTargets(s string) ([]float64, error) {
	var out []float64
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || !(v > 0 && v <= 1) {
			return nil, fmt.Errorf("-targets %q: want utilisations in (0, 1] separated by commas, e.g. 0.6,0.7,0.8", s)
		}
		out = append(out, v)
	}
	return out, nil
}

func loadLengths(path string) ([][2]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bench autoscale: %w", err)
	}
	defer f.Close()
	arr, err := bench.ParseAzureCSV(f)
	if err != nil {
		return nil, fmt.Errorf("bench autoscale: %s: %w", path, err)
	}
	out := make([][2]int, len(arr))
	for i, a := range arr {
		out[i] = [2]int{a.InputTokens, a.OutputTokens}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("bench autoscale: %s: no requests", path)
	}
	return out, nil
}

func writeAutoscaleSVG(path string, w *scalesim.Workload, need func(float64) float64, rs []*scalesim.Result, names []string) error {
	perWindow := int(w.Window / time.Minute)
	demand := make([]float64, len(w.Rates)*perWindow)
	for m := range demand {
		demand[m] = need(w.Rates[m/perWindow])
	}
	var fcast []float64
	for _, pt := range rs[2].Timeline {
		fcast = append(fcast, pt.Forecast)
	}
	panels := make([]scalesim.Panel, len(rs))
	for i, r := range rs {
		prov, serving := make([]float64, len(r.Timeline)), make([]float64, len(r.Timeline))
		for m, pt := range r.Timeline {
			prov[m], serving[m] = float64(pt.Provisioned), float64(pt.Serving)
		}
		panels[i] = scalesim.Panel{Title: names[i], Series: []scalesim.Series{
			{Name: "demand (servers)", Colour: "#888", Values: demand},
			{Name: "forecast p90 at lead", Colour: "#e67e22", Dashed: true, Values: fcast},
			{Name: "servers", Colour: "#2c7fb8", Values: prov},
			{Name: "serving", Colour: "#31a354", Values: serving},
		}}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench autoscale: %w", err)
	}
	if err := scalesim.WriteSVG(f, panels, 5); err != nil {
		f.Close()
		return fmt.Errorf("bench autoscale: %w", err)
	}
	return f.Close()
}
