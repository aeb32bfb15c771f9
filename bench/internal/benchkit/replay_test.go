package benchkit

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
)

func TestSliceSpansToTheNextRequest(t *testing.T) {
	tr := []bench.Arrival{{At: 0}, {At: 2 * time.Second}, {At: 3 * time.Second}, {At: 7 * time.Second}, {At: 8 * time.Second}}
	arr, span, err := Slice(tr, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(arr) != 2 || arr[0].At != 0 || arr[1].At != time.Second || span != 5*time.Second {
		t.Errorf("slice %v spanning %s; want [0 1s] spanning 5s", arr, span)
	}
	// At the trace's end: one mean gap past the last (6s over 3 gaps).
	if _, span, _ := Slice(tr, 1, 4); span != 8*time.Second {
		t.Errorf("end span %s, want 8s", span)
	}
	if _, _, err := Slice(tr, 3, 3); err == nil {
		t.Error("a slice past the trace's end was cut")
	}
	out, ts := Stretch(arr, span, 10*time.Second)
	if ts != 2 || out[1].At != 2*time.Second || out[0].InputTokens != 1 {
		t.Errorf("stretched x%v: %v", ts, out)
	}
}

func TestMeanTokensCountsAtLeastOne(t *testing.T) {
	p, o := MeanTokens([]bench.Arrival{{InputTokens: 3, OutputTokens: 0}, {InputTokens: 5, OutputTokens: 4}})
	if p != 4 || o != 2.5 {
		t.Errorf("mean %v / %v, want 4 / 2.5", p, o)
	}
}
