package main

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/forecast"
)

// LAD must ignore gross outliers that pull least squares away: the fit
// MASE's absolute error asks for.
func TestLADIgnoresOutliersThatMoveLeastSquares(t *testing.T) {
	var xs [][]float64
	var ys []float64
	for i := range 200 {
		x := float64(i % 17)
		y := 2 + 3*x
		if i%5 == 0 {
			y += 500 // one point in five far above the line
		}
		xs, ys = append(xs, []float64{1, x}), append(ys, y)
	}
	b := lad(xs, ys, 60)
	if math.Abs(b[0]-2) > 0.05 || math.Abs(b[1]-3) > 0.05 {
		t.Fatalf("lad = %v, want [2 3]", b)
	}
	if o := ols(xs, ys); math.Abs(o[0]-2) < 50 {
		t.Fatalf("ols = %v: expected the outliers to move it (else this test shows nothing)", o)
	}
}

// The online gap rule must find the same windows as the scoring mask on a
// series with a daily cycle and an outage, without looking ahead.
func TestOnlineGapsMatchTheScoringMask(t *testing.T) {
	ys := make([]float64, 5*perDay)
	for i := range ys {
		ys[i] = 1000 + 400*math.Sin(2*math.Pi*float64(i)/perDay)
	}
	for i := 2*perDay + 30; i < 2*perDay+42; i++ {
		ys[i] = 0
	}
	got, want := onlineGaps(ys), forecast.DetectGaps(ys, perDay)
	for i := range ys {
		if got[i] != want[i] {
			t.Fatalf("window %d: online %v, mask %v", i, got[i], want[i])
		}
	}
}

// The whole program on a small synthetic folder: two clients, eight days.
func TestRunPrintsEveryAngle(t *testing.T) {
	dir := t.TempDir()
	for c, amp := range map[string]float64{"chunk-1": 300, "chunk-2": 50} {
		var b strings.Builder
		for i := range 8 * perDay {
			rate := amp * (2 + math.Sin(2*math.Pi*float64(i)/perDay) + 0.1*float64(i%7))
			b.WriteString(strings.Join([]string{strconv.Itoa(i * window), strconv.FormatFloat(rate, 'f', -1, 64), "1.5", "Gamma", "0.4", "0.01"}, ",") + "\n")
		}
		if err := os.WriteFile(filepath.Join(dir, c+"-trace.csv"), []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tr.names[0] != "chunk-1" {
		t.Fatalf("largest client %q, want chunk-1", tr.names[0])
	}
	var out strings.Builder
	if err := run(&out, tr, 7); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"(a) per client", "(c) last + slot's mean change", "(b,d) LAD on own+clients",
		"(d) analog", "bound: chunk-1 known exactly", "(e) internal/forecast per client", "(e) internal/forecast: 1 largest apart", "(e) pick by trailing error",
		"floor: chunk-1 step onsets unknown", "# split by chunk-1 onsets", "# dips (under half the level before) of chunk-1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "NaN") {
		t.Errorf("output has NaN:\n%s", out.String())
	}
}

// A step's onset is its first window: a one-window spike is no step, and
// a step spread over two windows is one onset, so the floor built on
// onsets leaves neither to the forecaster's ignorance.
func TestOnsetsMarkOnlyTheStartOfASustainedStep(t *testing.T) {
	x := make([]float64, 60)
	for i := range x {
		switch {
		case i >= 40:
			x[i] = 1000 // a step spread over two windows: 39 and 40
		case i == 39:
			x[i] = 600
		case i == 20:
			x[i] = 900 // a spike of one window
		default:
			x[i] = 100
		}
	}
	jump := onsets(stepLevel(x, 2), 200)
	for i, j := range jump {
		if want := i == 39; (j != 0) != want {
			t.Fatalf("window %d: jump %v (onset want %v); all %v", i, j, want, jump)
		}
	}
}

func TestOnsetRecurrenceFindsADailySchedule(t *testing.T) {
	// Two days of onsets: a step up at 08:00 and down at 17:00 each day,
	// and on the second day one more step up at 12:00 that the first day
	// lacks.
	jump := make([]float64, 3*perDay)
	for d := 0; d < 3; d++ {
		jump[d*perDay+48], jump[d*perDay+102] = 500, -500
	}
	jump[2*perDay+72] = 300
	hit, n, chance := onsetRecurrence(jump, perDay, 1)
	if n != 5 || hit != 4 {
		t.Fatalf("hit %d of %d, want 4 of 5 (the 12:00 step has no match a day earlier)", hit, n)
	}
	if want := 7.0 / 2 / float64(len(jump)) * 3; math.Abs(chance-want) > 1e-12 {
		t.Fatalf("chance %v, want %v", chance, want)
	}
	// A step the other way at the same time a day earlier does not count.
	jump[perDay+48] = -500
	if hit, _, _ := onsetRecurrence(jump, perDay, 1); hit != 2 {
		t.Fatalf("hit %d with the second day's 08:00 step down, want 2 (the 17:00 steps)", hit)
	}
}

func TestRecoveryReadsTheWayBackAfterADip(t *testing.T) {
	// A level of 1000 that drops to 200 for two windows every 20 windows
	// and is back at 1000 from the third: one window into a dip the value
	// an hour later is all the way back (recovery 1).
	x := make([]float64, 400)
	for i := range x {
		x[i] = 1000
		if i%20 == 10 || i%20 == 11 {
			x[i] = 200
		}
	}
	got := recovery(x, make([]bool, len(x)), 0, len(x), false)
	if !strings.Contains(got, "age 1 n=18 median 1.00 share>0.5 1.00;") || !strings.Contains(got, "age 2 n=18 median 1.00") {
		t.Fatalf("recovery %q", got)
	}
}
