package cache

import (
	"fmt"
	"sync"
	"testing"
)

// TestMemoTableUnderConcurrentUse: goroutines parsing and keying bodies
// that collide in a small table (with the race detector: it is read
// without a lock) never see another body's entry, never hold more than
// the table's slots, and the metrics add up: every body stored either
// filled a slot (Len) or replaced another body (Evictions), and Len is
// the slots filled.
func TestMemoTableUnderConcurrentUse(t *testing.T) {
	const n, workers, bodies = 8, 4, 200
	m, err := NewMemo(n)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range bodies {
				body := []byte(fmt.Sprintf(`{"model":"m","temperature":0,"messages":[{"role":"user","content":"%d-%d"}]}`, w, i))
				p, err := m.Parse(body)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := m.Key(p, body, sc("m", "t", false)); err != nil {
					t.Error(err)
					return
				}
				// Whatever the memo answers now is this body's, or nothing.
				if q := m.get(p.id); q != nil && q.id != p.id {
					t.Errorf("body %d-%d answered another body's entry", w, i)
				}
			}
		}()
	}
	wg.Wait()
	filled := 0
	for i := range m.slots {
		if m.slots[i].Load() != nil {
			filled++
		}
	}
	if m.Len() != filled || filled > n || m.Capacity() != n {
		t.Fatalf("Len %d, slots filled %d, capacity %d, made for %d", m.Len(), filled, m.Capacity(), n)
	}
	if got := uint64(m.Len()) + m.Evictions(); got != workers*bodies {
		t.Fatalf("Len %d + Evictions %d = %d, want every body stored once: %d", m.Len(), m.Evictions(), got, workers*bodies)
	}
}

// TestMemoTwoSlots: two bodies whose ids choose the same slot are both
// kept (the second in the next slot), and a third replaces one of them,
// counted as an eviction.
func TestMemoTwoSlots(t *testing.T) {
	m, err := NewMemo(16)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := bodyID{a: 5, b: 10}, bodyID{a: 5, b: 11}, bodyID{a: 5, b: 12}
	m.set(&Parsed{id: a})
	m.set(&Parsed{id: b})
	if m.get(a) == nil || m.get(b) == nil || m.Len() != 2 || m.Evictions() != 0 {
		t.Fatalf("two bodies on one slot: a %v b %v, Len %d, Evictions %d", m.get(a) != nil, m.get(b) != nil, m.Len(), m.Evictions())
	}
	m.set(&Parsed{id: a}) // the same body again: no eviction, no new slot
	if m.Len() != 2 || m.Evictions() != 0 {
		t.Fatalf("a body stored again: Len %d, Evictions %d", m.Len(), m.Evictions())
	}
	m.set(&Parsed{id: c})
	if m.get(c) == nil || (m.get(a) != nil) == (m.get(b) != nil) || m.Len() != 2 || m.Evictions() != 1 {
		t.Fatalf("a third body: c %v a %v b %v, Len %d, Evictions %d", m.get(c) != nil, m.get(a) != nil, m.get(b) != nil, m.Len(), m.Evictions())
	}
	// The last slot's neighbour is the first.
	last := bodyID{a: ^uint64(0), b: 1}
	if m.slot(last) != 15 || m.next(15) != 0 {
		t.Fatalf("slot %d, next %d", m.slot(last), m.next(15))
	}
}
