package routing

import (
	"slices"
	"testing"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

func TestLeastConn(t *testing.T) {
	tests := []struct {
		name     string
		inflight []int
		weights  []int
		want     []string // acceptable picks; each must show up (random tie-break)
	}{
		{"fewest outstanding", []int{3, 1, 2}, []int{1, 1, 1}, []string{"b"}},
		{"idle pool shares ties", []int{0, 0, 0}, []int{1, 1, 1}, []string{"a", "b", "c"}},
		{"ties among the lowest only", []int{2, 2, 5}, []int{1, 1, 1}, []string{"a", "b"}},
		{"per unit of weight", []int{4, 2}, []int{4, 1}, []string{"a"}},              // 1 < 2
		{"weighted tie", []int{4, 1}, []int{4, 1}, []string{"a", "b"}},               // 1 = 1
		{"heavy backend takes more", []int{10, 3, 3}, []int{5, 1, 1}, []string{"a"}}, // 2 < 3
		{"light backend can win", []int{12, 2, 3}, []int{5, 1, 1}, []string{"b"}},    // 2.4 > 2
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bs []*endpoint.Backend
			for i, n := range tt.inflight {
				b := mk(t, string(rune('a'+i)), tt.weights[i], 0)
				acquireN(t, b, n)
				bs = append(bs, b)
			}
			p := newPicker(t, "least_conn", 7)
			seen := map[string]int{}
			for range 200 {
				seen[p.Pick(&Request{}, bs).Name()]++
			}
			for n := range seen {
				if !slices.Contains(tt.want, n) {
					t.Errorf("picked %s (%d times), want one of %v", n, seen[n], tt.want)
				}
			}
			for _, n := range tt.want {
				if seen[n] == 0 {
					t.Errorf("%s never picked; ties must be shared: %v", n, seen)
				}
			}
		})
	}
}
