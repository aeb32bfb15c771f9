package batchapi

import (
	"context"
	"runtime"
	"testing"
)

// A waiter whose client leaves at the moment the bytes are granted to it
// either proceeds (and releases) or gives them back: never kept, never
// released twice. A file larger than the gate (max_file_bytes lowered
// after upload) still passes alone.
func TestCreateGateCancelAtGrantReleasesOnce(t *testing.T) {
	g := newCreateGate(10, nil)
	for range 500 {
		rel, err := g.acquire(context.Background(), 1<<40) // larger than the gate
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan func(), 1)
		go func() {
			r, err := g.acquire(ctx, 10)
			if err != nil {
				r = func() {}
			}
			done <- r
		}()
		for {
			g.mu.Lock()
			n := len(g.waiting)
			g.mu.Unlock()
			if n == 1 {
				break
			}
			runtime.Gosched()
		}
		cancel()
		rel()
		(<-done)()
		g.mu.Lock()
		held, waiting := g.held, len(g.waiting)
		g.mu.Unlock()
		if held != 0 || waiting != 0 {
			t.Fatalf("after: %d bytes held, %d waiting; want 0, 0", held, waiting)
		}
	}
}
