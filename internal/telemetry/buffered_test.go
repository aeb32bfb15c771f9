package telemetry

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestBufferedWriterBuffersUntilClose: with a flush interval no test run
// reaches, nothing is written through, and Close writes every line. The
// timer is tested apart: a short one could fire between a Write and the
// check that it was buffered on a loaded machine.
func TestBufferedWriterBuffersUntilClose(t *testing.T) {
	var out lockedBuffer
	w := NewBufferedWriter(&out, 1<<16, time.Hour)
	w.Write([]byte("one\n"))
	if out.String() != "" {
		t.Fatal("written through at once: not buffered")
	}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); w.Write([]byte("line\n")) }()
	}
	wg.Wait()
	if out.String() != "" {
		t.Fatal("written through before Close: not buffered")
	}
	w.Close()
	if got := out.String(); !strings.HasPrefix(got, "one\n") || strings.Count(got, "line\n") != 50 {
		t.Fatalf("after Close: %q, want one then 50 lines", got)
	}
}

// TestBufferedWriterFlushesOnTimer: a buffered line is written by the
// flusher with no further Write or Close. The bound only turns a flusher
// that never runs into a failure.
func TestBufferedWriterFlushesOnTimer(t *testing.T) {
	var out lockedBuffer
	w := NewBufferedWriter(&out, 1<<16, 20*time.Millisecond)
	defer w.Close()
	w.Write([]byte("one\n"))
	deadline := time.Now().Add(30 * time.Second)
	for out.String() != "one\n" {
		if time.Now().After(deadline) {
			t.Fatalf("not flushed by the timer: %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
