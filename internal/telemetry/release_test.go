package telemetry

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestBufferedWriterReleasesBurst: a burst held while the output was
// blocked (1 MiB pending) is written whole once it takes writes, and its
// buffer is then released: the capacity is back to a few batches. On the
// old writer the 1 MiB buffer was kept as the spare for good.
func TestBufferedWriterReleasesBurst(t *testing.T) {
	defer goleak.VerifyNone(t)
	out := newBlockingWriter()
	defer out.unblock()
	tick := make(chan time.Time)
	w := testWriter(out, tick, 1<<20)
	w.Write([]byte(strings.Repeat("x", 63) + "\n")) // the batch size: the writer is woken
	<-out.entered                                   // and stuck in out.Write
	line := []byte(strings.Repeat("y", 99) + "\n")
	for i := 0; i < (1<<20)/len(line); i++ {
		w.Write(line)
	}
	if c := w.Capacity(); c < 1<<20 {
		t.Fatalf("capacity during the burst %d, want at least 1 MiB", c)
	}
	out.unblock()
	tick <- time.Time{}
	tick <- time.Time{} // the burst's write is done once the loop takes a second tick
	if got, want := len(out.out.String()), 64+(1<<20)/len(line)*len(line); got != want {
		t.Fatalf("%d bytes out, want %d", got, want)
	}
	c := w.Capacity()
	t.Logf("capacity once drained: %d bytes", c)
	if c > 4*64 {
		t.Fatalf("capacity once drained %d, want at most 4 batches (256)", c)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBufferedWriterCloseNoting: a Close that gives up on a blocked
// output says so in one line on the fallback given, and returns within
// its bound even when that fallback is the blocked output itself, whose
// line then follows the pending ones once it takes writes. On the old
// writer nothing said so (cmd/sluice dropped Close's error).
func TestBufferedWriterCloseNoting(t *testing.T) {
	defer goleak.VerifyNone(t)
	out := newBlockingWriter()
	defer out.unblock()
	w := newBufferedWriter(out, writerConfig{batch: 64, limit: 1 << 20, closeWait: 10 * time.Millisecond,
		noticeWait: 10 * time.Millisecond, now: time.Now})
	w.Write([]byte("kept\n"))
	var fallback lockedBuffer
	if err := w.CloseNoting(&fallback); !errors.Is(err, errCloseBlocked) {
		t.Fatalf("CloseNoting with the output blocked: %v", err)
	}
	want := "sluice: log output blocked: gave up after 10ms with 5 bytes unwritten (0 lines dropped before)\n"
	if got := fallback.String(); got != want {
		t.Fatalf("fallback got %q, want %q", got, want)
	}
	// The fallback is the blocked output: CloseNoting returns all the same.
	// (Its Close has nothing to write: it ends without the output, given
	// a minute so that a loaded machine cannot make it give up.)
	w2 := newBufferedWriter(out, writerConfig{batch: 64, limit: 1 << 20, closeWait: time.Minute,
		noticeWait: 10 * time.Millisecond, now: time.Now})
	if err := w2.CloseNoting(out); err != nil { // nothing pending: w2's Close is not blocked
		t.Fatalf("CloseNoting with nothing pending: %v", err)
	}
	w2 = newBufferedWriter(out, writerConfig{batch: 64, limit: 1 << 20, closeWait: 10 * time.Millisecond,
		noticeWait: 10 * time.Millisecond, now: time.Now})
	w2.Write([]byte("also\n"))
	if err := w2.CloseNoting(out); !errors.Is(err, errCloseBlocked) {
		t.Fatalf("CloseNoting on its own blocked output: %v", err)
	}
	out.unblock()
	<-w.done
	<-w2.done
	// The notice is written by CloseNoting's own goroutine, which was
	// blocked on out and returns at its own pace once out takes writes.
	const notice = "sluice: log output blocked: gave up after 10ms with 5 bytes unwritten"
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out.out.String(), notice); {
		if time.Now().After(deadline) {
			t.Fatalf("the notice never reached the output once it took writes: %q", out.out.String())
		}
		time.Sleep(time.Millisecond)
	}
	if got := out.out.String(); !strings.Contains(got, "kept\n") || !strings.Contains(got, "also\n") {
		t.Fatalf("out: %q", got)
	}
}
