package telemetry

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// blockingWriter blocks every Write until release is closed, then
// records; entered says a Write is under way.
type blockingWriter struct {
	release     chan struct{}
	entered     chan struct{}
	once        sync.Once
	releaseOnce sync.Once
	out         lockedBuffer
}

func newBlockingWriter() *blockingWriter {
	return &blockingWriter{release: make(chan struct{}), entered: make(chan struct{})}
}

// unblock lets writes through; a test defers it (after goleak's check is
// deferred) so a failure leaves no goroutine stuck behind it.
func (w *blockingWriter) unblock() { w.releaseOnce.Do(func() { close(w.release) }) }

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return w.out.Write(p)
}

func testWriter(w *blockingWriter, tick <-chan time.Time, limit int) *BufferedWriter {
	return newBufferedWriter(w, writerConfig{batch: 64, limit: limit, closeWait: 5 * time.Second,
		now: func() time.Time { return time.Date(2026, 12, 5, 14, 0, 0, 0, time.UTC) }, tick: tick})
}

// TestBufferedWriterNeverWaitsOnBlockedOutput: with the output blocked
// inside a write, writers from many goroutines all return; what passes
// the bound is dropped whole and counted, and once the output takes writes
// again every kept line comes out whole, in order, then the drop count.
// On the old writer the Writes block on its mutex behind the write.
func TestBufferedWriterNeverWaitsOnBlockedOutput(t *testing.T) {
	defer goleak.VerifyNone(t)
	out := newBlockingWriter()
	defer out.unblock()
	w := testWriter(out, nil, 1000)
	w.Write([]byte(strings.Repeat("x", 63) + "\n")) // the batch size: the writer is woken
	<-out.entered                                   // the writer goroutine is now stuck in out.Write

	const goroutines, each = 20, 50
	finished := make(chan int, goroutines)
	for g := 0; g < goroutines; g++ {
		go func() {
			for i := 0; i < each; i++ {
				w.Write([]byte(fmt.Sprintf("g%02d line %03d\n", g, i))) // 13 bytes
			}
			finished <- g
		}()
	}
	deadline := time.After(time.Minute) // a bound on a hang, not a timing
	for g := 0; g < goroutines; g++ {
		select {
		case <-finished:
		case <-deadline:
			t.Fatalf("%d of %d writing goroutines blocked on the log output", goroutines-g, goroutines)
		}
	}
	kept := 1000 / 13 // 76 lines fit in the pending buffer
	if got := w.Dropped(); got != goroutines*each-int64(kept) {
		t.Fatalf("dropped %d lines, want %d", got, goroutines*each-kept)
	}
	out.unblock()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.out.String(), "\n"), "\n")
	if len(lines) != 1+kept+1 {
		t.Fatalf("%d lines out, want 1 + %d kept + the drop notice", len(lines), kept)
	}
	last := map[string]int{}
	for _, l := range lines[1 : 1+kept] {
		var g, i int
		if n, err := fmt.Sscanf(l, "g%02d line %03d", &g, &i); n != 2 || err != nil || len(l) != 12 {
			t.Fatalf("line not whole: %q", l)
		}
		key := fmt.Sprint(g)
		if prev, ok := last[key]; ok && i <= prev {
			t.Fatalf("goroutine %d's lines out of order: %d after %d", g, i, prev)
		}
		last[key] = i
	}
	want := fmt.Sprintf(`{"time":"2026-12-05T14:00:00Z","level":"WARN","msg":"log output blocked: lines dropped","dropped":%d}`, goroutines*each-kept)
	if lines[len(lines)-1] != want {
		t.Fatalf("last line %q, want %q", lines[len(lines)-1], want)
	}
}

// TestBufferedLoggerWarningNotHeldForTick: a warning is written without a
// tick (none ever comes here), and logging it does not wait for the write.
func TestBufferedLoggerWarningNotHeldForTick(t *testing.T) {
	defer goleak.VerifyNone(t)
	out := newBlockingWriter()
	defer out.unblock()
	w := testWriter(out, nil, 1<<20)
	log := newFlushingLogger(w, slog.LevelInfo)
	log.Info("held")
	log.Warn("now")       // returns with the output blocked
	<-out.entered         // and the writer is writing it, with no tick
	log.Error("also now") // still returns
	out.unblock()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := out.out.String()
	if !strings.Contains(got, `"msg":"held"`) || !strings.Contains(got, `"msg":"now"`) || !strings.Contains(got, `"msg":"also now"`) {
		t.Fatalf("out: %q", got)
	}
}

// TestBufferedWriterTickWrites: a line below the batch size is written on
// the tick.
func TestBufferedWriterTickWrites(t *testing.T) {
	defer goleak.VerifyNone(t)
	out := newBlockingWriter()
	defer out.unblock()
	out.unblock()
	tick := make(chan time.Time)
	w := testWriter(out, tick, 1<<20)
	w.Write([]byte("one\n"))
	tick <- time.Time{}
	tick <- time.Time{} // the first tick's write is done once the loop takes a second
	if got := out.out.String(); got != "one\n" {
		t.Fatalf("after a tick: %q", got)
	}
	w.Close()
}

// TestBufferedWriterCloseGivesUp: Close with the output blocked returns
// after its bounded wait, saying so; the writer goroutine ends once the
// output takes the write.
func TestBufferedWriterCloseGivesUp(t *testing.T) {
	defer goleak.VerifyNone(t)
	out := newBlockingWriter()
	defer out.unblock()
	w := newBufferedWriter(out, writerConfig{batch: 64, limit: 1 << 20, closeWait: 10 * time.Millisecond,
		now: time.Now})
	w.Write([]byte("kept\n"))
	err := w.Close()
	if !errors.Is(err, errCloseBlocked) {
		t.Fatalf("Close with the output blocked: %v", err)
	}
	out.unblock()
	<-w.done
	if got := out.out.String(); got != "kept\n" {
		t.Fatalf("out: %q", got)
	}
}

// BenchmarkBufferedWriterWrite: an access log line's Write, the output
// taking writes; 0 allocs/op in steady state.
func BenchmarkBufferedWriterWrite(b *testing.B) {
	var sink bytes.Buffer
	w := NewBufferedWriter(discard{&sink}, batchBytes, time.Second)
	defer w.Close()
	line := []byte(`{"time":"2026-12-05T14:00:00Z","level":"INFO","msg":"access","method":"POST","path":"/v1/chat/completions","status":200,"dur_ms":1.2}` + "\n")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Write(line)
		}
	})
}

type discard struct{ *bytes.Buffer }

func (discard) Write(p []byte) (int, error) { return len(p), nil }
