package routing

import (
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// TestWeightedSmoothSequence checks nginx's smooth weighted round robin
// order, over several cycles, through Select.
func TestWeightedSmoothSequence(t *testing.T) {
	tests := []struct {
		weights []int
		cycle   string // one cycle of picks, backends named a, b, c...
	}{
		{[]int{5, 1, 1}, "aabacaa"}, // the example in nginx's source
		{[]int{1, 1, 1}, "abc"},
		{[]int{2, 1}, "aba"},
		{[]int{3, 2}, "ababa"},
		{[]int{1, 4}, "bbabb"},
	}
	for _, tt := range tests {
		t.Run(tt.cycle, func(t *testing.T) {
			bs := mkWeighted(t, tt.weights)
			p := newPicker(t, "weighted", 1)
			var got strings.Builder
			for range 3 * len(tt.cycle) {
				got.WriteString(Select(t0, p, &Request{}, bs, nil).Name())
			}
			if want := strings.Repeat(tt.cycle, 3); got.String() != want {
				t.Errorf("weights %v: picks %s, want %s", tt.weights, got.String(), want)
			}
		})
	}
}

func mkWeighted(t *testing.T, weights []int) []*endpoint.Backend {
	t.Helper()
	var bs []*endpoint.Backend
	for i, w := range weights {
		bs = append(bs, mk(t, string(rune('a'+i)), w, 0))
	}
	return bs
}
