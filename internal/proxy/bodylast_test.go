package proxy

import (
	"context"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
)

// TestBodyLastReleasedElsewhereIsNotReused: an owner may read its next
// request into a Body only when its own release dropped the last
// reference (ReleaseLast true). When another holder drops the last one
// (a coalesced call's Release, the transport's write hook on its own
// goroutine), that holder finishes giving the buffers back, and the owner,
// whose release came first, must not be told to reuse the Body: the
// holder could still be putting the old buffer back over the next
// request's fields. On hitfast the owner's separate check (Reusable)
// after the other's release reported it reusable. When both let go at
// once, exactly one is told, and its reuse races with nothing (-race).
func TestBodyLastReleasedElsewhereIsNotReused(t *testing.T) {
	p := NewBodyPool(nil)
	read := func(s string) *Body {
		t.Helper()
		b, err := p.ReadBody(strings.NewReader(s), int64(len(s)), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// A flight retains the body; the owner lets go first.
	b := read("a prompt a flight shares")
	b.Retain()
	if b.ReleaseLast() {
		t.Fatal("the owner is told to reuse a body a flight still holds")
	}
	if !b.ReleaseLast() {
		t.Fatal("the flight's release, the last, is not reported as the last")
	}

	// The transport's write hook drops the last reference on its goroutine.
	b = read("a prompt the transport writes")
	wrote := httptrace.ContextClientTrace(b.holdUntilWritten(context.Background())).WroteRequest
	if b.ReleaseLast() {
		t.Fatal("the owner is told to reuse a body the transport still reads")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		wrote(httptrace.WroteRequestInfo{})
	}()
	<-done
	if b.buf != nil || b.held != nil {
		t.Fatal("the write hook's last release left the buffers in the body")
	}

	// Owner and flight let go at once: one of them, never both, is told,
	// and the one told reads the next body into it at once.
	for i := range 200 {
		b = read("a prompt released twice at once")
		b.Retain()
		var told [2]bool
		var wg sync.WaitGroup
		start := make(chan struct{})
		for j := range told {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if told[j] = b.ReleaseLast(); told[j] {
					next, err := p.ReadBodyReusing(b, strings.NewReader("the next request"), 16, 1<<20)
					if err != nil || string(next.Bytes()) != "the next request" {
						t.Errorf("reused: %q, %v", next.Bytes(), err)
						return
					}
					next.Release()
				}
			}()
		}
		close(start)
		wg.Wait()
		if told[0] == told[1] {
			t.Fatalf("round %d: owner told %v, flight told %v: want exactly one", i, told[0], told[1])
		}
	}
}
