package proxy

import (
	"strings"
	"testing"
)

// TestBodyReusedOnlyOnceEveryReferenceIsGone: ReleaseLast reports a
// Body free for reuse only when its owners and outbound readers have all
// let go, and never a poisoned one; read again into it (ReadBodyReusing), it is the new body
// whole (bytes, length, one owner), with no allocation of its own.
func TestBodyReusedOnlyOnceEveryReferenceIsGone(t *testing.T) {
	p := NewBodyPool(nil)
	b, err := p.ReadBody(strings.NewReader("first body"), 10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	b.Retain() // a coalesced call's
	if b.ReleaseLast() {
		t.Fatal("reusable while a retained owner still holds it")
	}
	if !b.ReleaseLast() {
		t.Fatal("not reusable once every reference is gone")
	}
	again, err := p.ReadBodyReusing(b, strings.NewReader("second, longer body"), -1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if again != b || string(again.Bytes()) != "second, longer body" || again.Len() != 19 {
		t.Fatalf("read again: same %v, %q, len %d", again == b, again.Bytes(), again.Len())
	}
	if !again.ReleaseLast() {
		t.Fatal("a body read again has more than its one owner")
	}
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
	if other.ReleaseLast() {
		t.Fatal("a poisoned body is reusable")
	}
}
