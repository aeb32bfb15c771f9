package demo

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
)

// row is one line of the before/after table: the seed document's rows
// (throughput, mean latency, p99, error rate, utilisation, time to scale
// out) plus the ones that say whether the answers came in time.
type row struct {
	name string
	cell func(r *Report, l *Leg) string
}

var rows = []row{
	{"requests offered", func(_ *Report, l *Leg) string { return fmt.Sprint(l.Result.Offered) }},
	{"served within the SLO", func(_ *Report, l *Leg) string {
		return fmt.Sprintf("%d (%s)", l.Result.Goodput.Count, pct(l.Result.Goodput.Fraction))
	}},
	{"throughput (requests/s)", func(_ *Report, l *Leg) string { return fmt.Sprintf("%.1f", l.Result.RPS) }},
	{"mean latency", func(_ *Report, l *Leg) string { return ms(l.Result.E2E.Mean, l.Result.E2E.Count) }},
	{"p99 latency", func(_ *Report, l *Leg) string { return ms(l.Result.E2E.P99, l.Result.E2E.Count) }},
	{"p99 TTFT", func(_ *Report, l *Leg) string { return ms(l.Result.TTFT.P99, l.Result.TTFT.Count) }},
	{"error rate", func(_ *Report, l *Leg) string { return pct(l.Result.ErrorRate + l.Result.RateLimitedRate) }},
	{"utilisation", func(_ *Report, l *Leg) string { return pct(l.Utilisation) }},
	{"backends", func(_ *Report, l *Leg) string {
		if l.FirstBackends == l.PeakBackends {
			return fmt.Sprint(l.FirstBackends)
		}
		return fmt.Sprintf("%d -> %d", l.FirstBackends, l.PeakBackends)
	}},
	{"time to scale out", func(r *Report, l *Leg) string {
		if !l.Elastic {
			return "never (fixed)"
		}
		if len(l.ScaleOut) == 0 {
			return "not needed"
		}
		e := l.ScaleOut[0]
		if e.Serving == 0 {
			return "not in the replay"
		}
		d := e.Serving - e.Asked
		return fmt.Sprintf("%.1fs (%s of trace)", d.Seconds(), traceMinutes(time.Duration(float64(d)*r.Compress)))
	}},
}

// RowNames are the table's row labels, in order: the README's sample
// table must have the same (internal/demo's test checks it).
func RowNames() []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.name
	}
	return out
}

// WriteTable prints the before/after table, as aligned text or as a
// Markdown table (`sluice demo --markdown`, for the README).
func (r *Report) WriteTable(w io.Writer, markdown bool) error {
	ew := bench.NewErrWriter(w)
	if markdown {
		ew.Printf("| |")
		for _, l := range r.Legs {
			ew.Printf(" %s |", l.Name)
		}
		ew.Printf("\n|---|%s\n", strings.Repeat("---:|", len(r.Legs)))
		for _, row := range rows {
			ew.Printf("| %s |", row.name)
			for i := range r.Legs {
				ew.Printf(" %s |", row.cell(r, &r.Legs[i]))
			}
			ew.Printf("\n")
		}
		return ew.Err()
	}
	ew.Printf("Before / after (same trace, same simulators; %d requests per replay):\n", r.Requests)
	tw := tabwriter.NewWriter(ew, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-24s\t", "")
	for _, l := range r.Legs {
		fmt.Fprintf(tw, "%s\t", l.Name)
	}
	fmt.Fprintln(tw)
	for _, row := range rows {
		fmt.Fprintf(tw, "%-24s\t", row.name)
		for i := range r.Legs {
			fmt.Fprintf(tw, "%s\t", row.cell(r, &r.Legs[i]))
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	ew.Printf("SLO: first token within %s. Error rate: requests answered 429 or 503 (refused), 5xx, timed out or cut, of those sent.\n", r.SLOTTFT)
	ew.Printf("Utilisation: busy batch slots / slots of the servers started (booting ones included), sampled every 100 ms.\n")
	return ew.Err()
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

// ms formats milliseconds; "-" without samples.
func ms(v float64, n int) string {
	switch {
	case n == 0:
		return "-"
	case v >= 1000:
		return fmt.Sprintf("%.2fs", v/1000)
	default:
		return fmt.Sprintf("%.0fms", v)
	}
}

func traceMinutes(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.0fs", d.Seconds())
	}
	return fmt.Sprintf("%.1f min", d.Minutes())
}
