package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// crossCount fills l.Cross: each tenant's requests by class, so a leg
// shows whose long prompts were served and whose short ones refused (the
// tenant and class tables alone do not say which tenant lost what).
func (l *MixLeg) crossCount(rep *MixReport, slo, step time.Duration) {
	l.Cross = make([]MixCount, len(rep.Tenants)*len(mixClasses))
	for t, tn := range rep.Tenants {
		for i, c := range mixClasses {
			l.Cross[t*len(mixClasses)+i].Name = tn.Name + " " + c
		}
	}
	for _, m := range l.records {
		t := m.rec.Tenant
		if t < 0 || t >= len(rep.Tenants) {
			continue
		}
		for i, c := range mixClasses {
			if m.class() == c {
				l.Cross[t*len(mixClasses)+i].add(m, slo, step)
			}
		}
	}
	for i := range l.Cross {
		l.Cross[i].finish()
	}
}

// crossText is the cross counts as one progress line per tenant: in SLO /
// late / refused at arrival / refused after queueing / offered, by class.
func (l *MixLeg) crossText() string {
	var b strings.Builder
	n := len(mixClasses)
	for t := 0; t*n < len(l.Cross); t++ {
		b.WriteString("\n        ")
		for i, c := range l.Cross[t*n : t*n+n] {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s %d/%d/%d/%d of %d", c.Name, c.InSLO, c.Late, c.RefusedAtArrival, c.RefusedWithRA-c.RefusedAtArrival, c.Offered)
		}
		in, all := l.tenantTokens(t)
		fmt.Fprintf(&b, "; prompt+output tokens in SLO %d of %d offered", in, all)
	}
	if w := l.Why; w != nil {
		fmt.Fprintf(&b, "\n        while queued: idle pool slots %.1f, gateway capacity %.1f, held %.1f, backend waiting %.1f (idle = below limit %.1f + gateway free %.1f + transit %.1f + engine waiting %.1f)",
			w.IdleSlotsQueued, w.CapacityQueued, w.HeldQueued, w.BackendWaitQueued, w.IdleSplitQueued[0], w.IdleSplitQueued[1], w.IdleSplitQueued[2], w.IdleSplitQueued[3])
		keys := slices.Sorted(maps.Keys(w.Gateway))
		for _, k := range keys {
			if strings.HasPrefix(k, "refused") {
				fmt.Fprintf(&b, "; %s %.0f", k, w.Gateway[k])
			}
		}
	}
	return b.String()
}

// tenantTokens is tenant t's prompt and output tokens (the unit admission
// is fair in) of its requests answered in SLO, and of all it offered.
func (l *MixLeg) tenantTokens(t int) (in, all int) {
	for _, m := range l.records {
		if m.rec.Tenant != t {
			continue
		}
		n := m.arr.InputTokens + m.arr.OutputTokens
		all += n
		if m.good(l.slo, l.step) {
			in += n
		}
	}
	return in, all
}
