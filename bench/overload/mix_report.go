package main

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
)

// writeMix writes the mix scenario's section.
func writeMix(ew *benchkit.ErrWriter, rep *Report) {
	m := rep.Mix
	p := ew.Printf
	p("## Overload: goodput on a mixed workload (tenants, long prompts, non-streamed), Sluice's defaults vs round robin\n\n")
	if rep.Goodput == nil {
		ew.RunHeader(rep.Run)
	}
	p("- Trace `%s` (%s): arrivals and prompt lengths; prompts clamped to %d tokens and not scaled, outputs clamped to %d and scaled by %g: mean prompt %.0f / output %.1f tokens; pool capacity for that mean **%.1f req/s**. Each leg replays round(k x capacity x %gs) requests time-scaled to %gs.\n",
		m.Trace, traceSource(m.Trace), m.MaxInput, m.MaxOutput, m.OutputScale, m.MeanPrompt, m.MeanOutput, m.CapacityRPS, m.DurationS, m.DurationS)
	p("- Tenants (API keys), shares from the busiest clients of ServeGen `%s` (Xiang et al., arXiv:2505.09999; Apache-2.0), by mean rate over the series: ", m.ServeGen)
	for i, t := range m.Tenants {
		if i > 0 {
			p(", ")
		}
		p("%s = %s %.1f%%", t.Name, t.Client, 100*t.Share)
		if t.From > 0 {
			p(" (from %.0f%% of the leg on)", 100*t.From)
		}
	}
	p(".\n")
	p("- %.0f%% of the requests non-streamed (dealt at random, same deal for every path). Long: prompt >= %d tokens (the gateway prices such a prompt by the engines' queued prefill).\n", 100*m.NoStream, mixLong)
	slo := time.Duration(m.SLOms * float64(time.Millisecond))
	p("- Answered in SLO: a stream whose first token came within %s; a non-streamed request, whose client sees nothing before the whole answer (the head comes with it), answered within %s + its max_tokens x %.0f ms (the TTFT SLO plus a time-per-output-token budget: the two bounds a streaming client holds, summed). Late: answered OK after that. Unannounced: every outcome other than OK or a 429/503 with Retry-After (a 503 without Retry-After included). Clients give up after %gs.\n",
		slo, slo, m.TPOTms, m.TimeoutS)
	p("- Paths: **direct** = round robin; **sluice** = one gateway, Sluice's default configuration (as the goodput legs). Fresh simulators and gateway for every leg.\n\n")
	for _, r := range regimesOf(m.Legs) {
		writeMixRegime(ew, m, r)
	}
}

func regimesOf(legs []*MixLeg) []string {
	var rs []string
	for _, l := range legs {
		if !slices.Contains(rs, l.Regime) {
			rs = append(rs, l.Regime)
		}
	}
	return rs
}

func writeMixRegime(ew *benchkit.ErrWriter, m *MixReport, regime string) {
	p := ew.Printf
	p("#### Mix, regime %s\n\n", regime)
	ew.TableHead(benchkit.Cols("load", "path", "class", "offered", "answered in SLO", "late", "refused with RA", "unannounced"))
	var legs []*MixLeg
	for _, l := range m.Legs {
		if l.Regime == regime {
			legs = append(legs, l)
		}
	}
	for _, l := range legs {
		for _, c := range append([]MixCount{l.All}, l.Classes...) {
			ew.Row(fmt.Sprintf("%gx", l.Load), l.Path, c.Name, fmt.Sprint(c.Offered), fmt.Sprint(c.InSLO), fmt.Sprint(c.Late),
				fmt.Sprint(c.RefusedWithRA), unannouncedText(c))
		}
	}
	p("\n")
	ew.TableHead(benchkit.Cols("load", "path", "tenant", "offered", "answered in SLO", "late", "refused with RA", "unannounced"))
	for _, l := range legs {
		for _, c := range l.Tenants {
			ew.Row(fmt.Sprintf("%gx", l.Load), l.Path, c.Name, fmt.Sprint(c.Offered), fmt.Sprint(c.InSLO), fmt.Sprint(c.Late),
				fmt.Sprint(c.RefusedWithRA), unannouncedText(c))
		}
	}
	p("\n")
	writeMixRefusals(ew, legs)
	ew.TableHead(benchkit.Cols("load", "class or tenant", "direct in SLO", "sluice in SLO", "sluice / direct"))
	for _, l := range legs {
		if l.Path != pathSluice {
			continue
		}
		d := findMixLeg(legs, l.Load, pathDirect)
		if d == nil {
			continue
		}
		rows := append(append([]MixCount{l.All}, l.Classes...), l.Tenants...)
		drows := append(append([]MixCount{d.All}, d.Classes...), d.Tenants...)
		for i, c := range rows {
			ew.Row(fmt.Sprintf("%gx", l.Load), c.Name, fmt.Sprint(drows[i].InSLO), fmt.Sprint(c.InSLO), ratioText(float64(c.InSLO), float64(drows[i].InSLO)))
		}
	}
	p("\n")
}

func findMixLeg(legs []*MixLeg, load float64, path string) *MixLeg {
	for _, l := range legs {
		if l.Load == load && l.Path == path {
			return l
		}
	}
	return nil
}

// unannouncedText is the count and, when any, its kinds.
func unannouncedText(c MixCount) string {
	if c.Unannounced == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c.UnannouncedBy)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, c.UnannouncedBy[k]))
	}
	return fmt.Sprintf("%d (%s)", c.Unannounced, strings.Join(parts, ", "))
}

// writeMixRefusals writes whose requests were refused with Retry-After,
// and why (the code of each refusal's body): per tenant, then its
// classes with a refusal. The gateway's counters (Why) give the reasons
// per leg only.
func writeMixRefusals(ew *benchkit.ErrWriter, legs []*MixLeg) {
	ew.Printf("Refusals with Retry-After by tenant and class, and why (the error code of each refusal's body):\n\n")
	ew.TableHead(benchkit.Cols("load", "path", "tenant", "class", "refused with RA>", "at arrival>", "by reason (error code)"))
	n, rows := len(mixClasses), 0
	for _, l := range legs {
		for t, tc := range l.Tenants {
			if tc.RefusedWithRA == 0 {
				continue
			}
			load := fmt.Sprintf("%gx", l.Load)
			rows++
			ew.Row(load, l.Path, tc.Name, "all", fmt.Sprint(tc.RefusedWithRA), fmt.Sprint(tc.RefusedAtArrival), refusedText(tc))
			if (t+1)*n > len(l.Cross) {
				continue
			}
			for i, c := range l.Cross[t*n : (t+1)*n] {
				if c.RefusedWithRA > 0 {
					ew.Row(load, l.Path, tc.Name, mixClasses[i], fmt.Sprint(c.RefusedWithRA), fmt.Sprint(c.RefusedAtArrival), refusedText(c))
				}
			}
		}
	}
	if rows == 0 {
		ew.Row("-", "-", "-", "-", "0", "0", "none refused")
	}
	ew.Printf("\n")
}

// refusedText is the refusals by code, most first (ties by code).
func refusedText(c MixCount) string {
	codes := slices.Collect(maps.Keys(c.RefusedBy))
	slices.SortFunc(codes, func(a, b string) int {
		return cmp.Or(cmp.Compare(c.RefusedBy[b], c.RefusedBy[a]), cmp.Compare(a, b))
	})
	parts := make([]string, len(codes))
	for i, k := range codes {
		parts[i] = fmt.Sprintf("%s %d", k, c.RefusedBy[k])
	}
	return strings.Join(parts, ", ")
}
