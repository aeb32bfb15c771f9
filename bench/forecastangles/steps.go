package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/sluice-gw/sluice/internal/forecast"
)

// perTenant is angle (e): internal/forecast itself run per tenant, as the
// gateway would run it with one key per client, and the tenants' mean
// forecasts summed (means add; the per-client methods of angle (a) were
// medians, which do not). Rows: every client its own key; the largest
// client apart and the rest as one key; the k largest apart and the rest
// as one key.
func (e *env) perTenant() ([]row, error) {
	type group struct {
		name    string
		members [][]string // each inner list is one key: those clients summed
	}
	rest := func(from int) []string { return slices.Clone(e.tr.names[from:]) }
	groups := []group{{name: "(e) internal/forecast per client (109 keys), means summed"}}
	for _, c := range e.tr.names {
		groups[0].members = append(groups[0].members, []string{c})
	}
	for _, k := range []int{1, 3, 10} {
		if k >= len(e.tr.names) {
			break
		}
		g := group{name: fmt.Sprintf("(e) internal/forecast: %d largest apart + the rest as one key", k)}
		for _, c := range e.tr.names[:k] {
			g.members = append(g.members, []string{c})
		}
		g.members = append(g.members, rest(k))
		groups = append(groups, g)
	}
	rows := make([]row, len(groups), len(groups)+1)
	var sumKey, apart [][]float64
	for gi, g := range groups {
		rows[gi] = row{name: g.name, hasTrain: true}
		series := make([][]float64, len(g.members))
		for i, m := range g.members {
			series[i] = make([]float64, e.n)
			for _, c := range m {
				for t, v := range e.tr.rate[c] {
					series[i][t] += v
				}
			}
		}
		fcs, err := walkKeys(series, e.n)
		if err != nil {
			return nil, err
		}
		for i := range horizons {
			e.score(&rows[gi], i, fcs[i])
		}
		if len(g.members) == 2 {
			apart = fcs
		}
	}
	sumKey, err := walkKeys([][]float64{e.tr.sum}, e.n)
	if err != nil || apart == nil {
		return rows, err
	}
	pick := row{name: "(e) pick by trailing error: the sum as one key, or the largest apart + the rest", hasTrain: true}
	for i, h := range horizons {
		e.score(&pick, i, e.pickByError(sumKey[i], apart[i], h, 36, 8))
	}
	return append(rows, pick), nil
}

// pickByError combines two forecast series made for h windows ahead as
// internal/forecast combines its two error memories: weights the inverse
// power of each one's mean absolute error, smoothed with a half-life of
// memory horizons, learned only from forecasts already come due.
func (e *env) pickByError(a, b []float64, h int, memory, power float64) []float64 {
	keep := math.Pow(0.5, 1/(memory*float64(h)))
	ea, eb := 1.0, 1.0
	out := make([]float64, e.n)
	for o := range out {
		if p := o - h; p >= 0 && !e.og[o] && !e.og[p] {
			ea = keep*ea + (1-keep)*math.Abs(a[p]-e.tr.sum[o])
			eb = keep*eb + (1-keep)*math.Abs(b[p]-e.tr.sum[o])
		}
		wa, wb := math.Pow(ea, -power), math.Pow(eb, -power)
		out[o] = (wa*a[o] + wb*b[o]) / (wa + wb)
	}
	return out
}

// walkKeys feeds each series to one Forecaster under its own key, one
// window at a time, and returns per horizon the sum of the keys' mean
// forecasts made at each window (nothing later visible).
func walkKeys(series [][]float64, n int) ([][]float64, error) {
	iv := window * time.Second
	cfg := forecast.Config{Interval: iv, MaxHorizon: time.Duration(slices.Max(horizons)) * iv}
	f, err := forecast.New(cfg.WithDefaults())
	if err != nil {
		return nil, err
	}
	out := make([][]float64, len(horizons))
	for i := range out {
		out[i] = make([]float64, n)
	}
	keys := make([]forecast.Key, len(series))
	for k := range keys {
		keys[k] = forecast.Key{Model: fmt.Sprintf("k%d", k)}
	}
	start := time.Unix(0, 0)
	for o := 0; o < n; o++ {
		at := start.Add(time.Duration(o) * iv)
		for k, s := range series {
			f.Observe(at, keys[k], s[o]*iv.Seconds(), 0)
		}
		f.Advance(at.Add(iv))
		for i, h := range horizons {
			for k, s := range series {
				if fc, ok := f.Forecast(keys[k], time.Duration(h)*iv); ok {
					out[i][o] += fc.Requests.Mean
				} else {
					out[i][o] += s[o]
				}
			}
		}
	}
	return out, nil
}

// stepLevel is the largest client's level: a centred running median of
// 2k+1 windows of its gap-cleaned rate (it sees both ways: only for the
// floor below). A median keeps a step's edge where it is and drops
// spikes shorter than k+1 windows.
func stepLevel(x []float64, k int) []float64 {
	l := make([]float64, len(x))
	for t := range x {
		l[t] = median(slices.Clone(x[max(0, t-k):min(len(x), t+k+1)]))
	}
	return l
}

// onsets marks the windows where the level jumps by more than thr and
// did not jump the same way the window before: the start of a step. A
// step's later windows (a move spread over several windows) are not
// onsets: they follow one that has been seen, so the floor gives them to
// the forecaster.
func onsets(l []float64, thr float64) []float64 {
	jump := make([]float64, len(l))
	for t := 1; t < len(l); t++ {
		d := l[t] - l[t-1]
		if math.Abs(d) <= thr {
			continue
		}
		if p := l[t-1] - l[max(0, t-2)]; t >= 2 && math.Abs(p) > thr && (p > 0) == (d > 0) {
			continue
		}
		jump[t] = d
	}
	return jump
}

// stepFloor prints and returns the floor rows: how far the sum's error
// can fall when only the onsets of the largest client's level steps are
// unknown. (1) "everything else known": the forecast is the true future
// minus the onsets' jumps within the horizon (their median is zero while
// a step within the horizon is less likely than not), so its error is
// the mean |sum of the jumps|. (2) "perfect where no onset": exact where
// the horizon holds no onset, the last value where it does. Both see the
// answers; both are floors only under the premise that a step's onset is
// not foreseeable, which the printed hazards test.
func (e *env) stepFloor(w io.Writer) []row {
	c := e.tr.names[0]
	x := e.clients[c]
	var d []float64
	for t := 1; t < e.trainEnd; t++ {
		if !e.og[t] && !e.og[t-1] {
			d = append(d, math.Abs(x[t]-x[t-1]))
		}
	}
	med := median(d)
	var rows []row
	for _, k := range []int{2, 3} {
		l := stepLevel(x, k)
		for _, mult := range []float64{3, 5, 8} {
			thr := mult * med
			jump := onsets(l, thr)
			r1 := row{name: fmt.Sprintf("floor: %s step onsets unknown, all else known (median %d, jump > %.0fx %.0f)", c, 2*k+1, mult, med)}
			r2 := row{name: fmt.Sprintf("floor: exact unless an onset within h, then naive (median %d, > %.0fx)", 2*k+1, mult)}
			var haz [3]string
			for i, h := range horizons {
				f1, f2 := make([]float64, e.n), make([]float64, e.n)
				for o := 0; o+h < e.n; o++ {
					var j float64
					var any bool
					for t := o + 1; t <= o+h; t++ {
						j += jump[t]
						any = any || jump[t] != 0
					}
					f1[o] = e.tr.sum[o+h] - j
					f2[o] = e.tr.sum[o+h]
					if any {
						f2[o] = e.tr.sum[o]
					}
				}
				e.score(&r1, i, f1)
				e.score(&r2, i, f2)
				haz[i] = e.hazard(jump, x, h)
			}
			rows = append(rows, r1, r2)
			fmt.Fprintf(w, "# onsets of %s (median %d, > %.0f req/s): %d in days 1-%d, %d after; P(onset within h) 10m %s; 30m %s; 60m %s\n",
				c, 2*k+1, thr, countNonZero(jump[:e.trainEnd]), e.trainEnd/perDay, countNonZero(jump[e.trainEnd:]), haz[0], haz[1], haz[2])
		}
	}
	return rows
}

// hazard is the share of scored origins whose next h windows hold an
// onset: overall on the scored days, and the highest of any hour of the
// day, of any time since the last onset (in hours, capped at 24) and of
// any tenth of the client's current rate (level, gap-cleaned; tenths of
// its distribution over all days), over all days in hindsight. Under 0.5
// everywhere means the L1-best forecast of the onsets' effect, knowing
// the hour, the time since the last step or the client's rate, is still
// zero.
func (e *env) hazard(jump, level []float64, h int) string {
	var byHour, bySince, byLevel [25][2]int
	sorted := slices.Clone(level)
	slices.Sort(sorted)
	tenth := func(v float64) int {
		i, _ := slices.BinarySearch(sorted, v)
		return min(9, 10*i/len(sorted))
	}
	var all [2]int
	last := -1
	for o := perDay; o+h < e.n; o++ {
		if jump[o] != 0 {
			last = o
		}
		if e.test.gaps[o] || e.test.gaps[o+h] {
			continue
		}
		hit := 0
		for t := o + 1; t <= o+h; t++ {
			if jump[t] != 0 {
				hit = 1
			}
		}
		hr := (o % perDay) / 6
		since := 24
		if last >= 0 {
			since = min(24, (o-last)/6)
		}
		byHour[hr][0] += hit
		byLevel[tenth(level[o])][0] += hit
		byLevel[tenth(level[o])][1]++
		byHour[hr][1]++
		bySince[since][0] += hit
		bySince[since][1]++
		if o >= e.trainEnd {
			all[0] += hit
			all[1]++
		}
	}
	maxOf := func(b [25][2]int) (float64, int) {
		best, at := 0.0, 0
		for i, v := range b {
			if v[1] >= 10 && float64(v[0])/float64(v[1]) > best {
				best, at = float64(v[0])/float64(v[1]), i
			}
		}
		return best, at
	}
	mh, ah := maxOf(byHour)
	ml, al := maxOf(byLevel)
	ms, as := maxOf(bySince)
	return fmt.Sprintf("%.2f (max by hour %.2f at %02d:00, by hours since last %.2f at %dh, by tenth of the level %.2f at %d)",
		float64(all[0])/float64(all[1]), mh, ah, ms, as, ml, al)
}

func countNonZero(xs []float64) int {
	n := 0
	for _, x := range xs {
		if x != 0 {
			n++
		}
	}
	return n
}

// onsetSplit prints, for one onset definition, how the sum's scored
// windows and errors divide between horizons that hold an onset of the
// largest client's level steps and those that do not: the share of the
// windows and of the last value's error in each part, the forecaster's
// (internal/forecast on the sum, as `sluice bench forecast` runs it)
// ratio to the last value in each, and the ratio the part without onsets
// would need for 0.8 overall if the part with them stays where the
// forecaster has it.
func (e *env) onsetSplit(w io.Writer, k int, mult float64) error {
	c := e.tr.names[0]
	x := e.clients[c]
	var d []float64
	for t := 1; t < e.trainEnd; t++ {
		if !e.og[t] && !e.og[t-1] {
			d = append(d, math.Abs(x[t]-x[t-1]))
		}
	}
	jump := onsets(stepLevel(x, k), mult*median(d))
	fcs, err := walkKeys([][]float64{e.tr.sum}, e.n)
	if err != nil {
		return err
	}
	s := e.test
	in := &inputs{x: e.x}
	for _, c := range e.tr.names[:min(8, len(e.tr.names))] {
		in.clients = append(in.clients, e.clients[c])
	}
	for _, c := range e.tr.names[:min(3, len(e.tr.names))] {
		in.cvs = append(in.cvs, clean(e.tr.cv[c], e.og))
	}
	every := featureSet{own: true, yday: true, prof: true, clients: true, cv: true}
	for i, h := range horizons {
		in.profMean = slotProfile(e.x, e.og, h, e.trainEnd, false)
		in.profMedin = slotProfile(e.x, e.og, h, e.trainEnd, true)
		// Per part (0: no onset within h, 1: an onset), the scored
		// targets, and a LAD on every input fitted on exactly them: a
		// bound, it sees the answers.
		var targets [2][]int
		for t := max(s.lo, h, perDay); t < s.hi; t++ {
			if s.gaps[t] || s.gaps[t-h] || s.gaps[t-perDay] {
				continue
			}
			part := 0
			if slices.ContainsFunc(jump[t-h+1:t+1], func(j float64) bool { return j != 0 }) {
				part = 1
			}
			targets[part] = append(targets[part], t)
		}
		var naive, sluice, hind [2]float64
		for part, ts := range targets {
			var bx [][]float64
			var by []float64
			for _, t := range ts {
				bx, by = append(bx, in.features(every, t-h, h)), append(by, in.x[t]-in.x[t-h])
			}
			var fit []float64
			if len(ts) > len(every.String()) {
				fit = e.apply(in, every, h, lad(bx, by, 60))
			}
			for _, t := range ts {
				o := t - h
				naive[part] += math.Abs(s.ys[o] - s.ys[t])
				sluice[part] += math.Abs(fcs[i][o] - s.ys[t])
				if fit != nil {
					hind[part] += math.Abs(fit[o] - s.ys[t])
				}
			}
		}
		all := naive[0] + naive[1]
		n := len(targets[0]) + len(targets[1])
		fmt.Fprintf(w, "# split by %s onsets (median %d, > %.0fx), %dm: onset windows %.2f of %d, %.2f of naive's error; "+
			"sluice/naive with an onset %s, without %.3f, overall %.3f; hindsight LAD on every input with %s, without %.3f, overall %.3f; "+
			"0.8 overall needs the part without onsets at %.3f (with onsets at sluice's ratio) or %.3f (at the hindsight LAD's)\n",
			c, 2*k+1, mult, h*10, float64(len(targets[1]))/float64(n), n, naive[1]/all,
			ratioOrNone(sluice[1], naive[1]), sluice[0]/naive[0], (sluice[0]+sluice[1])/all,
			ratioOrNone(hind[1], naive[1]), hind[0]/naive[0], (hind[0]+hind[1])/all,
			(0.8*all-sluice[1])/naive[0], (0.8*all-hind[1])/naive[0])
	}
	return nil
}

// ratioOrNone formats a/b, or "none" when there is nothing to divide.
func ratioOrNone(a, b float64) string {
	if b == 0 {
		return "none"
	}
	return fmt.Sprintf("%.3f", a/b)
}
