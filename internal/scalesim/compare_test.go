package scalesim

import (
	"fmt"
	"testing"
	"time"
)

// Compare runs every controller on one workload and makes the swept HPA
// target with the fewest violation minutes (then the lowest cost) the
// reactive column.
func TestCompareChoosesTheBestSweptTarget(t *testing.T) {
	rates := []float64{1, 1, 1, 1, 3, 3, 1, 1}
	w := &Workload{Warm: rates, Rates: rates, Window: 10 * time.Minute, Lengths: [][2]int{{512, 128}},
		Compress: 120, Seed: 3}
	c, err := Compare(Setup{Workload: w, PeakServers: 4, ColdStart: 3 * time.Minute, Sync: 15 * time.Second,
		SLO: 2 * time.Second, MaxWait: 10 * time.Second, Headroom: 0.2, Hold: 5 * time.Minute,
		HPATargets: []float64{0.3, 0.9}, Tolerance: 0.1, Stabilisation: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if c.PeakNeed < 3.99 || c.PeakNeed > 4.01 || w.Sample <= 0 {
		t.Fatalf("peak need %.2f servers (sample %g), want the 4 asked for", c.PeakNeed, w.Sample)
	}
	if len(c.Sweep) != 2 {
		t.Fatalf("%d sweep rows, want one per target", len(c.Sweep))
	}
	best := c.Sweep[0]
	if s := c.Sweep[1]; s.Summary.ViolationMinutes < best.Summary.ViolationMinutes ||
		s.Summary.ViolationMinutes == best.Summary.ViolationMinutes && s.Summary.ServerMinutes < best.Summary.ServerMinutes {
		best = s
	}
	if r := c.Reactive.Summary; r.ViolationMinutes != best.Summary.ViolationMinutes || r.ServerMinutes != best.Summary.ServerMinutes || c.Reactive.Name != fmt.Sprintf("reactive(hpa_target=%.2f)", best.Target) {
		t.Fatalf("reactive column %+v, want the sweep's best (target %.1f) %+v", c.Reactive.Summary, best.Target, best.Summary)
	}
	names := []string{}
	for _, col := range c.Columns() {
		if col.Result == nil || col.Summary.Requests == 0 {
			t.Fatalf("column %s ran nothing", col.Name)
		}
		names = append(names, col.Name)
	}
	if names[0] != "fixed" || names[2] != "predictive" || names[3] != "signal-only(no_forecast)" {
		t.Fatalf("columns %v", names)
	}
	if _, err := Compare(Setup{Workload: &Workload{Rates: []float64{0}, Window: time.Minute, Compress: 60}, PeakServers: 4, HPATargets: []float64{0.5}}); err == nil {
		t.Fatal("a replay without traffic compared")
	}
}
