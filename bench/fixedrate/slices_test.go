package main

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestMedianCIBracketsTheMedianAndSeparatesAClearShift(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	if lo, hi := medianCI([]float64{2, 2, 2, 2}, rng); lo != 2 || hi != 2 {
		t.Fatalf("constant differences: CI [%v, %v], want [2, 2]", lo, hi)
	}
	// Differences that straddle 0: the interval must too.
	mixed := []float64{-3, -1, -0.5, 0.2, 0.4, 1, 2.5, -2, 0.1, -0.1}
	if lo, hi := medianCI(mixed, rng); !(lo < 0 && hi > 0) {
		t.Fatalf("mixed differences: CI [%v, %v] should span 0", lo, hi)
	}
	// Every repeat slower by 1-2 ms: the interval stays above 0.
	shifted := []float64{1, 1.2, 1.5, 2, 1.1, 1.8, 1.3, 1.7, 1.4, 1.6}
	lo, hi := medianCI(shifted, rng)
	if !(lo >= 1 && hi <= 2 && lo <= hi) {
		t.Fatalf("shifted differences: CI [%v, %v], want within [1, 2]", lo, hi)
	}
}

func TestWritePairsNamesEveryPairOnce(t *testing.T) {
	ts := []*target{
		{name: "direct", p99: []float64{1, 1, 1}},
		{name: "bare-go", p99: []float64{2, 2, 3}},
		{name: "sluice", p99: []float64{2, 3, 3}},
	}
	var out bytes.Buffer
	writePairs(&out, ts, rand.New(rand.NewPCG(1, 2)))
	text := out.String()
	for _, want := range []string{"bare-go    - direct", "sluice     - direct", "sluice     - bare-go"} {
		if strings.Count(text, want) != 1 {
			t.Errorf("want one line %q in\n%s", want, text)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "sluice     - bare-go") && (!strings.Contains(line, " +0.000 ms") || !strings.HasSuffix(line, " 1/3")) {
			t.Errorf("sluice - bare-go: want median +0.000 ms and 1/3 repeats slower, got %q", line)
		}
	}
}
