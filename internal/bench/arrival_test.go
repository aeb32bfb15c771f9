package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestConstant(t *testing.T) {
	arr := Constant(10, time.Second, 100, 20)
	if len(arr) != 10 {
		t.Fatalf("10/s over 1s: %d arrivals, want 10", len(arr))
	}
	for i, a := range arr {
		if want := time.Duration(i) * 100 * time.Millisecond; a.At != want {
			t.Errorf("arrival %d at %v, want %v", i, a.At, want)
		}
		if a.InputTokens != 100 || a.OutputTokens != 20 {
			t.Errorf("arrival %d tokens %d/%d", i, a.InputTokens, a.OutputTokens)
		}
	}
	if Constant(0, time.Second, 1, 1) != nil || Constant(math.NaN(), time.Second, 1, 1) != nil {
		t.Error("a non-positive rate must plan nothing")
	}
}

func TestPoissonIsSeededAndHasTheRightRate(t *testing.T) {
	a := Poisson(rand.New(rand.NewPCG(7, 7)), 100, 100*time.Second, 1, 1)
	b := Poisson(rand.New(rand.NewPCG(7, 7)), 100, 100*time.Second, 1, 1)
	if !slices.EqualFunc(a, b, func(x, y Arrival) bool { return x.At == y.At }) {
		t.Fatal("the same seed gave different plans")
	}
	// 10,000 expected arrivals: the count's standard deviation is 100.
	if n := len(a); n < 9500 || n > 10500 {
		t.Errorf("100/s over 100s: %d arrivals", n)
	}
	if !slices.IsSortedFunc(a, func(x, y Arrival) int { return int(x.At - y.At) }) || a[len(a)-1].At >= 100*time.Second {
		t.Error("arrivals not ordered inside the window")
	}
}

func TestOnOff(t *testing.T) {
	arr := OnOff(10, time.Second, 2*time.Second, 6*time.Second, 1, 1)
	// Bursts at [0,1s) and [3s,4s): 10 arrivals each.
	if len(arr) != 20 {
		t.Fatalf("%d arrivals, want 20", len(arr))
	}
	for _, a := range arr {
		if !(a.At < time.Second || (a.At >= 3*time.Second && a.At < 4*time.Second)) {
			t.Errorf("arrival at %v is outside the on periods", a.At)
		}
	}
}

func TestReshapeTimeScale(t *testing.T) {
	arr := Reshape(Constant(1, 10*time.Second, 5, 5), TraceOptions{TimeScale: 0.1})
	if len(arr) != 10 || arr[9].At != 900*time.Millisecond {
		t.Fatalf("time scale 0.1: %d arrivals, last at %v; want 10, last at 900ms", len(arr), arr[len(arr)-1].At)
	}
}

func TestReshapeRateMultiplier(t *testing.T) {
	base := Constant(1, 10*time.Second, 5, 5) // at 0s, 1s, ..., 9s
	tests := []struct {
		mult float64
		want int
	}{{2, 20}, {0.5, 5}, {1.5, 15}, {3, 30}, {0.25, 2}}
	for _, tt := range tests {
		got := Reshape(base, TraceOptions{RateMultiplier: tt.mult})
		if len(got) != tt.want {
			t.Errorf("x%g: %d arrivals, want %d", tt.mult, len(got), tt.want)
		}
		if got[len(got)-1].At >= 10*time.Second {
			t.Errorf("x%g: the timeline grew to %v", tt.mult, got[len(got)-1].At)
		}
	}
	// Doubling keeps each original and puts its copy halfway to the next.
	two := Reshape(base, TraceOptions{RateMultiplier: 2})
	if two[0].At != 0 || two[1].At != 500*time.Millisecond || two[2].At != time.Second {
		t.Errorf("x2: first arrivals at %v %v %v, want 0 500ms 1s", two[0].At, two[1].At, two[2].At)
	}
	// Halving keeps every second arrival, deterministically.
	half := Reshape(base, TraceOptions{RateMultiplier: 0.5})
	for i, a := range half {
		if want := time.Duration(2*i+1) * time.Second; a.At != want {
			t.Errorf("x0.5: arrival %d at %v, want %v", i, a.At, want)
		}
	}
	if !slices.EqualFunc(Reshape(base, TraceOptions{RateMultiplier: 1.7}), Reshape(base, TraceOptions{RateMultiplier: 1.7}), arrivalEq) {
		t.Error("the multiplier is not deterministic")
	}
}

func TestReshapeClampsAndCaps(t *testing.T) {
	in := []Arrival{
		{At: 3 * time.Second, InputTokens: 90000, OutputTokens: 0},
		{At: 0, InputTokens: 100, OutputTokens: 5000, HashIDs: []int{1}},
		{At: time.Second, InputTokens: 10, OutputTokens: 10},
	}
	got := Reshape(in, TraceOptions{MaxInputTokens: 8192, MaxOutputTokens: 1024, Duration: 2 * time.Second})
	if len(got) != 2 || got[0].At != 0 || got[1].At != time.Second {
		t.Fatalf("want the two arrivals before 2s, in order; got %+v", got)
	}
	if got[0].OutputTokens != 1024 || got[0].InputTokens != 100 {
		t.Errorf("clamp: %+v", got[0])
	}
	if in[0].At != 3*time.Second {
		t.Error("Reshape modified its input")
	}
	all := Reshape(in, TraceOptions{MaxInputTokens: 8192})
	if all[2].InputTokens != 8192 || all[2].OutputTokens != 1 {
		t.Errorf("85k prompt must clamp to 8192 and a 0-token answer rise to 1: %+v", all[2])
	}
	if n := len(Reshape(in, TraceOptions{MaxRequests: 1})); n != 1 {
		t.Errorf("MaxRequests 1 kept %d", n)
	}
	scaled := Reshape(in, TraceOptions{TokenScale: 0.1})
	if scaled[0].InputTokens != 10 || scaled[0].OutputTokens != 500 {
		t.Errorf("token scale 0.1: %+v", scaled[0])
	}
	if b := (TraceOptions{TokenScale: 0.1}).BlockTokens(); b != 51 {
		t.Errorf("block tokens at scale 0.1 = %d, want 51", b)
	}
}

func TestAssignTenants(t *testing.T) {
	arr := Constant(1, 300*time.Second, 1, 1)
	AssignTenants(arr, []Tenant{{Share: 2}, {Share: 1}})
	count := [2]int{}
	for i, a := range arr {
		count[a.Tenant]++
		// Any prefix is within one request of the 2:1 split.
		if d := float64(count[0]) - 2*float64(i+1)/3; d > 1 || d < -1 {
			t.Fatalf("after %d arrivals tenant 0 has %d", i+1, count[0])
		}
	}
	if count != [2]int{200, 100} {
		t.Errorf("shares 2:1 over 300 gave %v", count)
	}
	AssignTenants(arr, make([]Tenant, 3))
	if arr[0].Tenant != 0 || arr[1].Tenant != 1 || arr[2].Tenant != 2 || arr[3].Tenant != 0 {
		t.Error("equal shares must be round robin")
	}
}

func TestMergeWithTenant(t *testing.T) {
	a := WithTenant(Constant(1, 3*time.Second, 1, 1), 0)
	b := WithTenant(Constant(2, 2*time.Second, 1, 1), 1)
	m := Merge(a, b)
	if len(m) != 7 {
		t.Fatalf("%d arrivals", len(m))
	}
	if m[0].Tenant != 0 || m[1].Tenant != 1 || m[2].Tenant != 1 {
		t.Errorf("ties must keep stream order: %+v", m[:3])
	}
	if !slices.IsSortedFunc(m, func(x, y Arrival) int { return int(x.At - y.At) }) {
		t.Error("not ordered")
	}
}
