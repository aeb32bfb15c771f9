package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes res as indented JSON (Records are left out).
func (res *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return fmt.Errorf("bench: write json: %w", err)
	}
	return nil
}

// WriteText writes a compact human-readable report.
func (res *Result) WriteText(w io.Writer) error {
	ew := &ErrWriter{w: w}
	p := ew.Printf
	name := "sluice bench"
	if res.Label != "" {
		name += ": " + res.Label
	}
	mode := "non-streaming"
	if res.Stream {
		mode = "streaming"
	}
	p("%s  %s  model %s  %s  window %.1fs", name, res.Target, res.Model, mode, res.WindowS)
	if res.Interrupted {
		p("  (INTERRUPTED)")
	}
	p("\nrequests  offered %d  sent %d  ok %d (%s)  refused %d  dropped-by-client %d\n",
		res.Offered, res.Sent, res.OK, pct(ratio(res.OK, res.Offered)), res.Refused, res.DroppedByClient)
	p("status   ")
	if len(res.ByStatus) == 0 {
		p(" none")
	}
	for _, code := range slices.Sorted(maps.Keys(res.ByStatus)) {
		p(" %d:%d", code, res.ByStatus[code])
	}
	p("\nerrors   ")
	if len(res.Errors) == 0 {
		p(" none")
	}
	for _, k := range slices.Sorted(maps.Keys(res.Errors)) {
		p(" %s:%d", k, res.Errors[k])
	}
	p("\nrates     %.1f ok/s  %.1f sent/s  %.0f output tok/s  error rate %s  429 rate %s\n",
		res.RPS, res.SentRPS, res.OutputTokensPerS, pct(res.ErrorRate), pct(res.RateLimitedRate))
	p("goodput   %.1f req/s  %s of offered  (SLO %s)\n", res.Goodput.PerS, pct(res.Goodput.Fraction), sloText(res.Goodput))

	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tn\tmean\tp50\tp90\tp99\tmax\t\n", leftAlign("latency", 8))
	for _, row := range []struct {
		name string
		s    Summary
	}{{"ttft", res.TTFT}, {"itl", res.ITL}, {"e2e", res.E2E}, {"refuse", res.TimeToRefuse}} {
		s := row.s
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", leftAlign("  "+row.name, 8), s.Count,
			dur(s.Mean, s.Count), dur(s.P50, s.Count), dur(s.P90, s.Count), dur(s.P99, s.Count), dur(s.Max, s.Count))
	}
	_ = tw.Flush()
	if res.Refused > 0 {
		p("retry-after on %s of %d refusals\n", pct(res.RetryAfterShare), res.Refused)
	}
	verdict := "generator kept up"
	switch {
	case res.Lag.P99 >= ms(keptUpLag):
		verdict = "GENERATOR FELL BEHIND: arrivals fired late, the offered load was lighter than planned"
	case res.DroppedByClient > 0:
		verdict = "arrivals were dropped at the client's in-flight cap: the offered load was lighter than planned"
	}
	p("lag       p50 %s  p99 %s  max %s  %s\n", dur(res.Lag.P50, res.Lag.Count), dur(res.Lag.P99, res.Lag.Count), dur(res.Lag.Max, res.Lag.Count), verdict)
	for _, h := range slices.Sorted(maps.Keys(res.Headers)) {
		p("header    %s:%s\n", h, topValues(res.Headers[h], 8))
	}
	if len(res.Tenants) > 0 {
		tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
		width := len("tenant")
		for _, t := range res.Tenants {
			width = max(width, len(t.Name)+2)
		}
		fmt.Fprintf(tw, "%s\toffered\tok\trefused\tfailed\tout tok/s\tgoodput\tttft p99\t\n", leftAlign("tenant", width))
		for _, t := range res.Tenants {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.0f\t%d\t%s\t\n", leftAlign("  "+t.Name, width), t.Offered, t.OK, t.Refused, t.Failed,
				t.OutputTokensPerS, t.Goodput, dur(t.TTFT.P99, t.TTFT.Count))
		}
		_ = tw.Flush()
		if res.CompletionTokens > 0 {
			p("fairness  Jain index over served output tokens %.3f\n", res.Fairness)
		} else {
			p("fairness  n/a: no output tokens were served\n")
		}
	}
	return ew.err
}

// Compare prints a two-column before/after table of the figures the seed
// document's result table uses: mean latency, p99 TTFT, error rate, goodput
// and requests served.
func Compare(w io.Writer, title string, before, after *Result, beforeName, afterName string) error {
	ew := &ErrWriter{w: w}
	if title != "" {
		ew.Printf("%s\n", title)
	}
	tw := tabwriter.NewWriter(ew, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\t%s\t%s\t\n", leftAlign("", 20), beforeName, afterName)
	row := func(name string, f func(r *Result) string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", leftAlign(name, 20), f(before), f(after))
	}
	row("requests offered", func(r *Result) string { return fmt.Sprint(r.Offered) })
	row("requests served OK", func(r *Result) string {
		return fmt.Sprintf("%d (%s)", r.OK, pct(ratio(r.OK, r.Offered)))
	})
	row("mean latency (OK)", func(r *Result) string { return dur(r.E2E.Mean, r.E2E.Count) })
	row("p99 latency (OK)", func(r *Result) string { return dur(r.E2E.P99, r.E2E.Count) })
	row("p99 TTFT", func(r *Result) string { return dur(r.TTFT.P99, r.TTFT.Count) })
	row("error rate", func(r *Result) string { return pct(r.ErrorRate) })
	row("refused with 429", func(r *Result) string { return pct(r.RateLimitedRate) })
	row("time to refuse p50", func(r *Result) string { return dur(r.TimeToRefuse.P50, r.TimeToRefuse.Count) })
	row("goodput", func(r *Result) string {
		return fmt.Sprintf("%.1f/s (%s)", r.Goodput.PerS, pct(r.Goodput.Fraction))
	})
	row("output tokens/s", func(r *Result) string { return fmt.Sprintf("%.0f", r.OutputTokensPerS) })
	_ = tw.Flush()
	if b, a := sloText(before.Goodput), sloText(after.Goodput); a == b {
		ew.Printf("goodput SLO: %s\n", a)
	} else {
		ew.Printf("goodput SLO: %s %s; %s %s\n", beforeName, b, afterName, a)
	}
	return ew.err
}

func sloText(g Goodput) string {
	var parts []string
	if g.SLOTTFTms > 0 {
		parts = append(parts, "ttft<="+dur(g.SLOTTFTms, 1))
	}
	if g.SLOE2Ems > 0 {
		parts = append(parts, "e2e<="+dur(g.SLOE2Ems, 1))
	}
	if len(parts) == 0 {
		return "none: every OK request counts"
	}
	return strings.Join(parts, ", ")
}

// dur formats milliseconds; "-" when there were no samples.
func dur(msv float64, n int) string {
	switch {
	case n == 0:
		return "-"
	case msv >= 1000:
		return fmt.Sprintf("%.2fs", msv/1000)
	case msv >= 100:
		return fmt.Sprintf("%.0fms", msv)
	case msv >= 1:
		return fmt.Sprintf("%.1fms", msv)
	default:
		return fmt.Sprintf("%.2fms", msv)
	}
}

// leftAlign pads s to width, so a right-aligning tabwriter leaves the first
// column flush left.
func leftAlign(s string, width int) string { return fmt.Sprintf("%-*s", width, s) }

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

// topValues lists the n most frequent values, most frequent first.
func topValues(m map[string]int, n int) string {
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), strings.Compare(a, b))
	})
	var sb strings.Builder
	for i, k := range keys {
		if i == n {
			fmt.Fprintf(&sb, " (+%d more)", len(keys)-n)
			break
		}
		fmt.Fprintf(&sb, " %s=%d", k, m[k])
	}
	return sb.String()
}

// ErrWriter keeps the first write error so report code (this package's and
// the demo's table) can print freely and check once.
type ErrWriter struct {
	w   io.Writer
	err error
}

func (e *ErrWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}

func (e *ErrWriter) Printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }

// NewErrWriter wraps w.
func NewErrWriter(w io.Writer) *ErrWriter { return &ErrWriter{w: w} }

// Err is the first write error, nil if every write succeeded.
func (e *ErrWriter) Err() error { return e.err }
