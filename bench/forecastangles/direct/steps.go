package main

import (
	"fmt"
	"sort"
)

// dwellStats prints chunk-60's level as a two-state process: the 2-means
// threshold of days 1-7 with a 10% hysteresis band, how long each state
// lasts, and the chance of a switch within an hour by time in the state,
// week by week (does the process carry from the tuning week to the scored one?).
func (e *env) dwellStats() {
	var v []float64
	for o := pd; o < 7*pd; o++ {
		if !e.og[o] {
			v = append(v, e.c[o])
		}
	}
	thr := twomeans(v)
	st := make([]int, e.n)
	for o := range e.n {
		switch {
		case o == 0:
			if e.c[o] > thr {
				st[o] = 1
			}
		case e.c[o] > 1.1*thr:
			st[o] = 1
		case e.c[o] < 0.9*thr:
			st[o] = 0
		default:
			st[o] = st[o-1]
		}
	}
	tis := make([]int, e.n)
	for o := 1; o < e.n; o++ {
		if st[o] == st[o-1] {
			tis[o] = tis[o-1] + 1
		}
	}
	fmt.Printf("# (a) chunk-60 two states: threshold %.0f req/s (2-means, days 1-7), hysteresis +-10%%\n", thr)
	for _, wk := range [][2]int{{0, 7 * pd}, {7 * pd, e.n}} {
		var dw [2][]float64
		run := 1
		var onsetTod [6]int
		for o := wk[0] + 1; o < wk[1]; o++ {
			if st[o] != st[o-1] {
				dw[st[o-1]] = append(dw[st[o-1]], float64(run*10))
				run = 1
				onsetTod[(o%pd)/24]++
			} else {
				run++
			}
		}
		q := func(x []float64) string {
			if len(x) == 0 {
				return "-"
			}
			sort.Float64s(x)
			return fmt.Sprintf("%d dwells, quartiles %.0f / %.0f / %.0f min", len(x), x[len(x)/4], x[len(x)/2], x[3*len(x)/4])
		}
		high := 0
		for o := wk[0]; o < wk[1]; o++ {
			high += st[o]
		}
		fmt.Printf("# (a) days %d-%d: high %.2f of windows; low %s; high %s; switches by 4 h of day from 00:00 %v\n",
			wk[0]/pd+1, wk[1]/pd, float64(high)/float64(wk[1]-wk[0]), q(dw[0]), q(dw[1]), onsetTod)
		bins := []int{1, 3, 8, 24, 72, 1 << 30}
		for s := 0; s < 2; s++ {
			line := fmt.Sprintf("# (a) days %d-%d from %s: P(other state in 60 min) by time in state <=10m/<=30m/<=80m/<=4h/<=12h/longer:", wk[0]/pd+1, wk[1]/pd, []string{"low", "high"}[s])
			for b := range bins {
				var n, k int
				for o := max(wk[0], pd); o+6 < wk[1]; o++ {
					if st[o] != s || e.og[o] || e.og[o+6] {
						continue
					}
					lo := 0
					if b > 0 {
						lo = bins[b-1] + 1
					}
					if tis[o]+1 < lo || tis[o]+1 > bins[b] {
						continue
					}
					n++
					if st[o+6] != s {
						k++
					}
				}
				if n == 0 {
					line += " -"
				} else {
					line += fmt.Sprintf(" %.2f (%d)", float64(k)/float64(n), n)
				}
			}
			fmt.Println(line)
		}
	}
}
