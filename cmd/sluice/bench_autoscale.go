package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/scalesim"
	"github.com/sluice-gw/sluice/internal/scaling"
)

// runBenchAutoscale replays days of a ServeGen rate trace, compressed,
// against a simulated pool under three controllers (fixed, reactive HPA,
// predictive) and prints one line per controller. Contract relied on by
// docs/BENCHMARKS.md §12:
//
//	sluice bench autoscale --servegen DIR --lengths AZURE_CSV [--start-day 8] [--days 2] [--compress 60] [--svg FILE]
func runBenchAutoscale(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench autoscale", "--servegen DIR --lengths AZURE_CSV [flags]")
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
		return usagef("--servegen DIR and --lengths AZURE_CSV are required")
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
		return fmt.Errorf("--start-day %d --days %d: the trace has %d days; at least one day must precede the replay", *startDay, *days, len(rates)/perDay)
	}
	w := &scalesim.Workload{Warm: rates[:from], Rates: rates[from:to], Window: window, Compress: *compress, Seed: *seed}
	if w.Lengths, err = loadLengths(*lengths); err != nil {
		return err
	}
	c, err := scalesim.Compare(scalesim.Setup{Workload: w, PeakServers: *peak,
		ColdStart: *cold, Sync: *syncPeriod, SLO: *slo, MaxWait: *maxWait,
		Headroom: *headroom, Lead: *lead, Hold: *hold,
		HPATargets: hpaTargets, Tolerance: *tol, Stabilisation: *stab})
	if err != nil {
		return fmt.Errorf("bench autoscale: %w", err)
	}
	printAutoscale(stdout, c, w, *startDay, *days, *cold, *lead, *slo)
	if *svg != "" {
		return writeAutoscaleSVG(*svg, w, c)
	}
	return nil
}

// printAutoscale writes the documented lines: the run's scale, the HPA
// sweep, one line per controller, and the verdict against the target.
func printAutoscale(out io.Writer, c *scalesim.Comparison, w *scalesim.Workload, startDay, days int, cold, lead, slo time.Duration) {
	fmt.Fprintf(out, "autoscale days=%d-%d (warmed on days 1-%d) compress=%g sample=%.4g service_rate=%.2f/s/server peak_need=%.1f mean_need=%.1f servers cold_start=%s lead=%s slo=%s requests=%d\n",
		startDay, startDay+days-1, startDay-1, w.Compress, w.Sample, c.ServiceRate, c.PeakNeed, c.MeanNeed,
		formatHorizon(cold), formatHorizon(lead), slo, c.Fixed.Summary.Requests)
	for _, row := range c.Sweep {
		fmt.Fprintf(out, "hpa_sweep target=%.2f %s\n", row.Target, summaryFields(row.Summary))
	}
	for _, col := range c.Columns() {
		fmt.Fprintf(out, "autoscale controller=%s %s\n", col.Name, summaryFields(col.Summary))
	}
	r, p := c.Reactive.Summary, c.Predictive.Summary
	cut := 1 - float64(p.ViolationMinutes)/math.Max(float64(r.ViolationMinutes), 1)
	cost := p.ServerMinutes / r.ServerMinutes
	fmt.Fprintf(out, "autoscale predictive_vs_reactive violation_minutes=%+.0f%% server_minutes=%.0f%% target=(<=-50%% at <=110%%) met=%t\n",
		-100*cut, 100*cost, cut >= 0.5 && cost <= 1.10)
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
			return nil, usagef("--targets %q: want utilisations in (0, 1] separated by commas, e.g. 0.6,0.7,0.8", s)
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

func writeAutoscaleSVG(path string, w *scalesim.Workload, c *scalesim.Comparison) error {
	perWindow := int(w.Window / time.Minute)
	demand := make([]float64, len(w.Rates)*perWindow)
	for m := range demand {
		demand[m] = c.Need(w.Rates[m/perWindow])
	}
	var fcast []float64
	for _, pt := range c.Predictive.Result.Timeline {
		fcast = append(fcast, pt.Forecast)
	}
	cols := []scalesim.Column{c.Fixed, c.Reactive, c.Predictive}
	panels := make([]scalesim.Panel, len(cols))
	for i, col := range cols {
		r := col.Result
		prov, serving := make([]float64, len(r.Timeline)), make([]float64, len(r.Timeline))
		for m, pt := range r.Timeline {
			prov[m], serving[m] = float64(pt.Provisioned), float64(pt.Serving)
		}
		panels[i] = scalesim.Panel{Title: col.Name, Series: []scalesim.Series{
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
