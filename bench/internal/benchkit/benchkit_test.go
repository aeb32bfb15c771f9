package benchkit

import (
	"testing"
	"time"
)

func TestLabel(t *testing.T) {
	l := `{model="m",subclass="x",class="interactive",le="0.001"}`
	if got := Label(l, "class"); got != "interactive" {
		t.Errorf("class = %q", got)
	}
	if got := Label(l, "le"); got != "0.001" {
		t.Errorf("le = %q", got)
	}
	if got := Label(l, "missing"); got != "" {
		t.Errorf("missing = %q", got)
	}
}

func TestCommandLineQuotes(t *testing.T) {
	if got := CommandLine("./bench/x", []string{"--a", "b c", ""}); got != `go run ./bench/x --a "b c" ""` {
		t.Fatalf("got %s", got)
	}
}

func TestMedianAndPercentile(t *testing.T) {
	if got := Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median odd = %v", got)
	}
	if got := Median([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("median even = %v", got)
	}
	ds := []time.Duration{5 * time.Millisecond, time.Millisecond, 3 * time.Millisecond}
	if got := PercentileMs(ds, 50); got != 3 {
		t.Errorf("p50 = %v", got)
	}
	if got := PercentileMs(nil, 99); got != 0 {
		t.Errorf("p99 of nothing = %v", got)
	}
}
