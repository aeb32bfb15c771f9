package proxy

import (
	"runtime"
	"strings"
	"testing"
	"weak"
)

// TestReusableBodyPinsNoBuffer: a Body kept for reuse (ReleaseLast: a
// connection's exchange keeps its last one, gateway spareBody, while the
// connection idles) holds no buffer. Its buffers went back to the pool
// at its last release; a pointer it kept to one (firstBlock) would pin
// that buffer, uncharged to the budget, for as long as the connection
// lives, and so up to 4 KiB for each idle keep-alive connection.
func TestReusableBodyPinsNoBuffer(t *testing.T) {
	p := NewBodyPool(nil)
	b, err := p.ReadBody(strings.NewReader(strings.Repeat("x", 100)), 100, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if b.held == nil {
		t.Fatal("a 100-byte body is not in a pooled buffer")
	}
	block := weak.Make(b.held)
	if !b.ReleaseLast() {
		t.Fatal("not reusable once released")
	}
	// The pool lets go of what it holds within two collections.
	for range 4 {
		runtime.GC()
	}
	if block.Value() != nil {
		t.Fatal("a released body kept for reuse still pins its buffer")
	}
	runtime.KeepAlive(b)
}
