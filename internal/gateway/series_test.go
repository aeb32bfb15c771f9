package gateway

import (
	"sync"
	"testing"
)

// Label sets that alternate from request to request, on several
// goroutines at once, each get the child made for them (resolved keeps
// the last one found aside), and a child is kept once made; and the
// lifetime tally counts each model's requests under its own name whatever
// the model before it was (tally keeps the last model aside too).
func TestResolvedAndTallyAlternatingKeys(t *testing.T) {
	var r resolved[requestLabels, *requestLabels]
	var mu sync.Mutex
	made := map[requestLabels]int{}
	r.make = func(l requestLabels) *requestLabels {
		mu.Lock()
		made[l]++
		mu.Unlock()
		return &l
	}
	var tl tally
	keys := []requestLabels{{"m1", "b1", 200}, {"m2", "b1", 200}, {"m1", "b1", 429}, {"m1", "b2", 200}}
	const workers, each = 4, 1000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				k := keys[(i+w)%len(keys)]
				if got := r.get(k); *got != k {
					t.Errorf("get(%v) = child of %v", k, *got)
					return
				}
				tl.finished(k.model, "")
			}
		})
	}
	wg.Wait()
	first := map[requestLabels]*requestLabels{}
	for _, k := range keys {
		first[k] = r.get(k)
	}
	for _, k := range keys {
		if r.get(k) != first[k] {
			t.Errorf("%v: another child on a later get", k)
		}
	}
	if n1, _ := tl.snapshot("m1"); n1 != workers*each*3/4 {
		t.Errorf("m1 counted %d, want %d", n1, workers*each*3/4)
	}
	if n2, _ := tl.snapshot("m2"); n2 != workers*each/4 {
		t.Errorf("m2 counted %d, want %d", n2, workers*each/4)
	}
}
