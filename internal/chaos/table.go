package chaos

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// writeTable prints the report: one row per scenario, the measurements,
// then a PASS/FAIL per target, then notes and the reasons of unannounced
// failures.
func writeTable(out io.Writer, rep *Report) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tclient sent/served/refused\tattack sent/served/refused\tunannounced\tjobs acc/lost/dup\tRSS MiB before/peak\tp99 TTFT calm/scenario\tgoroutines before/after\tfds before/after\tattack conns held/opened\tbytes each\tRSS\tp99\tfail\tjobs\tleak")
	for _, r := range rep.Rows {
		// Rows that did not run keep every cell, so the columns stay
		// aligned; the reason is in the notes below the table.
		if r.Skipped != "" || (r.Err != "" && r.Before.FDs == 0) {
			what := "skipped"
			if r.Skipped == "" {
				what = "ERROR"
			}
			fmt.Fprintf(tw, "%s\t%s%s\n", r.Name, what, strings.Repeat("\t-", 14))
			continue
		}
		jobs := "-"
		if r.Jobs {
			jobs = fmt.Sprintf("%d/%d/%d", r.JobsAccepted, r.Lost, r.Duped)
		}
		conns, bytes := "-", "-"
		if r.AttackConns > 0 {
			conns = fmt.Sprintf("%d/%d", r.AttackHeld, r.AttackConns)
			bytes = humanBytes(r.BytesEach)
		}
		fmt.Fprintf(tw, "%s\t%d/%d/%d\t%d/%d/%d\t%d\t%s\t%.0f/%.0f\t%s/%s\t%d/%d\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.Name, r.Client.Sent, r.Client.Served, r.Client.Refused,
			r.Attack.Sent, r.Attack.Served, r.Attack.Refused,
			r.Client.Unannounced+r.Attack.Unannounced, jobs,
			mib(r.RSSBeforeKiB), mib(r.RSSPeakKiB), ms(r.Calm.P99), ms(r.Client.P99),
			r.Before.Goroutines, r.After.Goroutines, r.Before.FDs, r.After.FDs, conns, bytes,
			r.rssTarget(), r.p99Target(), r.failTarget(), r.jobTarget(), r.leakTarget())
	}
	tw.Flush()
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Targets (issue 11 §5): RSS = peak growth <= 64 MiB per 1,000 stalled uploads; p99 = the well-behaved client's p99 TTFT <= 2x calm;")
	fmt.Fprintln(out, "fail = zero unannounced failures (client and attack: not an OpenAI-shaped 4xx/5xx, 429/503 without Retry-After, hang, reset, stream cut")
	fmt.Fprintln(out, "without an error event, an ambiguous request served); jobs = zero accepted jobs lost or duplicated (two results for one job:")
	fmt.Fprintln(out, "webhooks with different results or webhook-ids, or a result GET /v1/jobs/{id} does not show; a webhook sent again with the same")
	fmt.Fprintln(out, "webhook-id and result is at least once, noted, not a duplicate), and no stray webhook (a webhook of a job whose 202 the client")
	fmt.Fprintln(out, "never read must be of a job GET /v1/jobs/{id} shows, terminal, with that result; every body a job's result); leak = goroutines and fds back")
	fmt.Fprintln(out, "within 5% of before (both leave out the gateway's keep-alive pool to the backends: its fds, and net/http's readLoop and")
	fmt.Fprintln(out, "writeLoop goroutines, which the default lean client does not run; and the harness' own /metrics and health-check connections;")
	fmt.Fprintln(out, "fds also one established connection per Redis node). \"held\" = attack connections the gateway still kept open when the")
	fmt.Fprintln(out, "attack ended; bytes each = what each sent.")
	for _, r := range rep.Rows {
		var parts []string
		if r.Skipped != "" {
			parts = append(parts, "skipped: "+r.Skipped)
		}
		if r.Err != "" {
			parts = append(parts, "harness error: "+oneLine(r.Err))
		}
		parts = append(parts, r.Notes...)
		reasons := r.Client.plus(r.Attack).Reasons
		keys := make([]string, 0, len(reasons))
		for k := range reasons {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%d× %s", reasons[k], k))
		}
		if len(parts) > 0 {
			fmt.Fprintf(out, "  %s: %s\n", r.Name, strings.Join(parts, "; "))
		}
	}
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

func ms(d time.Duration) string {
	if d == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " | ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
