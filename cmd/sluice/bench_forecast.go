package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/forecast"
)

// runBenchForecast scores the forecaster on a ServeGen rate folder, walking
// forward over the days after the training days. Contract relied on by
// docs/BENCHMARKS.md, one line per horizon:
//
//	sluice bench forecast --servegen DIR [--horizon 10m,30m,60m] [--train-days 7]
//	forecast horizon=30m sluice=0.412 naive=0.583 seasonal_naive=0.611 coverage_p90=0.91
func runBenchForecast(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench forecast", "--servegen DIR [--horizon 10m,30m,60m] [--train-days 7] [--days N]")
	dir := fs.String("servegen", "", "ServeGen folder: one CSV per client, window_start_s,rate,... (required)")
	horizons := fs.String("horizon", "10m,30m,60m", "comma-separated forecast horizons to score")
	trainDays := fs.Int("train-days", 7, "days fed but not scored (anything tuned was tuned on these); the rest are scored")
	days := fs.Int("days", 0, "use only the first N days of the trace (0 = all): --days 7 --train-days 1 scores the tuning days 2-7")
	quiet := fs.Bool("quiet", false, "no summary line on stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usagef("--servegen DIR is required")
	}
	if *trainDays < 0 || *days < 0 {
		return usagef("--train-days %d --days %d: want zero or more", *trainDays, *days)
	}
	hs, err := parseHorizons(*horizons)
	if err != nil {
		return err
	}
	clients, names, window, err := bench.LoadServeGenClients(*dir)
	if err != nil {
		return err
	}
	if perDay := int(24 * time.Hour / window); *days > 0 && *days*perDay < len(clients[0]) {
		for i := range clients {
			clients[i] = clients[i][:*days*perDay]
		}
	}
	// The forecaster runs at the trace's resolution: one update per window.
	// Each client is a tenant of one model, as the gateway would count
	// them; the model's total is scored.
	ev, err := forecast.EvaluateTenants(clients, names, time.Unix(0, 0), forecast.Config{Interval: window}, *trainDays, hs)
	if err != nil {
		return err
	}
	if !*quiet {
		fmt.Fprintf(stderr, "bench forecast: %d windows of %v, %d clients as tenants of one model, days 1-%d fed unscored, %d windows detected as data gaps (< %.0f%% of the median of the same window 1-2 days either side) and not scored, MASE scale %.1f req/s\n",
			len(clients[0]), window, len(clients), *trainDays, ev.Gaps, 100*forecast.GapShare, ev.Scale)
	}
	for _, s := range ev.Scores {
		fmt.Fprintf(stdout, "forecast horizon=%s sluice=%.3f naive=%.3f seasonal_naive=%.3f coverage_p90=%.2f\n",
			formatHorizon(s.Horizon), s.Sluice, s.Naive, s.SeasonalNaive, s.CoverageP90)
	}
	return nil
}

// parseHorizons reads "10m,30m,60m".
func parseHorizons(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, part := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d <= 0 || d > 24*time.Hour {
			return nil, usagef("--horizon %q: want durations between 0 and 24h separated by commas, e.g. 10m,30m,60m", s)
		}
		out = append(out, d)
	}
	return out, nil
}

// formatHorizon prints 30m for 30 minutes and 90s for 90 seconds.
func formatHorizon(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
