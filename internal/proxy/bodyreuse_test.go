package proxy

import (
	"strings"
	"testing"
)

// TestBodyReusedOnlyOnceEveryReferenceIsGone: a Body is Reusable only
// when its owners and outbound readers have all let go, and not once
// poisoned; read again into it (ReadBodyReusing), it is the new body
// whole (bytes, length, one owner), with no allocation of its own.
func TestBodyReusedOnlyOnceEveryReferenceIsGone(t *testing.T) {
	p := NewBodyPool(nil)
	b, err := p.ReadBody(strings.NewReader("first body"), 10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	b.Retain() // a coalesced call's
	b.Release()
	if b.Reusable() {
		t.Fatal("reusable while a retained owner still holds it")
	}
	b.Release()
	if !b.Reusable() {
		t.Fatal("not reusable once every reference is gone")
	}
	again, err := p.ReadBodyReusing(b, strings.NewReader("second, longer body"), -1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if again != b || string(again.Bytes()) != "second, longer body" || again.Len() != 19 || again.Reusable() {
		t.Fatalf("read again: same %v, %q, len %d, reusable %v", again == b, again.Bytes(), again.Len(), again.Reusable())
	}
	again.Release()
	r := strings.NewReader("")
	if a := testing.AllocsPerRun(100, func() {
		r.Reset("a body of the usual kind")
		b, _ = p.ReadBodyReusing(b, r, 24, 1<<20)
		b.Release()
	}); a != 0 {
		t.Fatalf("ReadBodyReusing allocates %.0f per body, want 0", a)
	}
	// Another pool's body is not taken; a poisoned one is not reusable.
	q := NewBodyPool(nil)
	q.PoisonReleased()
	other, err := q.ReadBodyReusing(b, strings.NewReader("x"), 1, 10)
	if err != nil || other == b {
		t.Fatalf("another pool's spare: err %v, reused %v", err, other == b)
	}
	other.Release()
	if other.Reusable() {
		t.Fatal("a poisoned body is reusable")
	}
}
