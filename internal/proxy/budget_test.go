package proxy

import (
	"testing"
	"time"
)

// Set keeps what the budget holds: a spent budget stays spent under new
// settings, and a balance over the new bound is cut to it.
func TestBudgetSetKeepsTheBalance(t *testing.T) {
	at := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	b := NewBudget(0.01, 1)
	if !b.Withdraw(at) || b.Withdraw(at) {
		t.Fatal("a new budget holds min_per_second (1) retry")
	}
	b.Set(0.5, 1)
	if b.Withdraw(at) {
		t.Fatal("Set refilled a spent budget")
	}
	for range 100 {
		b.Deposit() // 50 at ratio 0.5, bounded at 10+100*0.5 = 60
	}
	b.Set(0, 1) // bound 10
	n := 0
	for b.Withdraw(at) {
		n++
	}
	if n != 10 {
		t.Fatalf("after lowering the bound to 10: %d retries, want 10", n)
	}
}

// Set keeps the counts in flight: hedges taken before stay counted.
func TestHedgeBudgetSetKeepsTheCounts(t *testing.T) {
	takes := func(b *HedgeBudget) int {
		n := 0
		for b.take() {
			n++
		}
		return n
	}
	b := NewHedgeBudget(0, 2)
	if n := takes(b); n != 2 {
		t.Fatalf("min 2: %d hedges, want 2", n)
	}
	b.Set(0, 3)
	if n := takes(b); n != 1 {
		t.Fatalf("min raised to 3 with 2 in flight: %d more, want 1", n)
	}
	if b.InFlight() != 3 {
		t.Fatalf("in flight %d, want 3", b.InFlight())
	}
}
