package routing

import (
	"testing"
)

func TestRandomRoughlyUniform(t *testing.T) {
	bs := mkPool(t, "a", "b", "c", "d")
	p := newPicker(t, "random", 3)
	const picks = 40000
	counts := map[string]int{}
	for range picks {
		counts[p.Pick(&Request{}, bs).Name()]++
	}
	want := picks / len(bs)
	for _, b := range bs {
		if n := counts[b.Name()]; n < want*95/100 || n > want*105/100 {
			t.Errorf("%s picked %d times, want %d ± 5%%", b.Name(), n, want)
		}
	}
}

// TestRandomRepeatable: the same seed gives the same picks, so failures in
// other tests can be replayed.
func TestRandomRepeatable(t *testing.T) {
	bs := mkPool(t, "a", "b", "c", "d")
	seq := func(seed uint64) string {
		p := newPicker(t, "random", seed)
		s := ""
		for range 32 {
			s += p.Pick(&Request{}, bs).Name()
		}
		return s
	}
	if a, b := seq(9), seq(9); a != b {
		t.Errorf("same seed, different picks: %s vs %s", a, b)
	}
	if a, b := seq(9), seq(10); a == b {
		t.Errorf("different seeds, same picks: %s", a)
	}
}
