package breaker

import (
	"math"
	"time"
)

// Counts are the calls recorded in a breaker's sliding window. Only Success
// and Failure outcomes are counted: Busy and Ignored never enter the window,
// so they dilute neither the error ratio nor the slow-call ratio.
type Counts struct {
	Calls    uint32 // Success + Failure
	Failures uint32
	Slow     uint32 // calls (successful or not) slower than Settings.SlowCall
}

// noEpoch marks a bucket that holds nothing. Epoch 0 is a real bucket (the
// first one after the Unix epoch), so the zero value cannot serve.
const noEpoch = math.MinInt64

type bucket struct {
	epoch int64 // which Window/Buckets-wide slice of time this bucket holds
	c     Counts
}

// window is a ring of fixed-width time buckets, the shape Sentinel's
// LeapArray and resilience4j's time-based window use: recording is O(1),
// summing is O(buckets), and old data leaves in whole buckets instead of
// needing one timestamp per call. Not safe for concurrent use; the Breaker
// holds its lock.
type window struct {
	buckets []bucket
	width   int64 // nanoseconds per bucket
	latest  int64 // newest epoch seen; concurrent callers report slightly out of order
}

func newWindow(span time.Duration, n int) window {
	w := window{buckets: make([]bucket, n), width: int64(span) / int64(n)}
	if w.width < 1 {
		w.width = 1
	}
	w.reset()
	return w
}

func (w *window) reset() {
	for i := range w.buckets {
		w.buckets[i] = bucket{epoch: noEpoch}
	}
	w.latest = noEpoch
}

// epoch floors now to its bucket number. Floor, not truncation, so times
// before 1970 (never in production, possible in a test) still land right.
func (w *window) epoch(now time.Time) int64 {
	ns := now.UnixNano()
	e := ns / w.width
	if ns%w.width < 0 {
		e--
	}
	return e
}

// add records one counted call at now. A call older than the window (a
// straggler reported late) is dropped rather than reviving a recycled bucket.
func (w *window) add(now time.Time, failed, slow bool) {
	e := w.epoch(now)
	n := int64(len(w.buckets))
	if w.latest != noEpoch && e <= w.latest-n {
		return
	}
	if e > w.latest {
		w.latest = e
	}
	b := &w.buckets[mod(e, n)]
	if b.epoch != e {
		if b.epoch > e {
			return // slot already reused for newer time
		}
		*b = bucket{epoch: e}
	}
	b.c.Calls++
	if failed {
		b.c.Failures++
	}
	if slow {
		b.c.Slow++
	}
}

// sum adds up the buckets still inside the window at now.
func (w *window) sum(now time.Time) Counts {
	cur := w.epoch(now)
	if w.latest > cur {
		cur = w.latest
	}
	oldest := cur - int64(len(w.buckets)) + 1
	var c Counts
	for i := range w.buckets {
		b := &w.buckets[i]
		if b.epoch >= oldest && b.epoch <= cur {
			c.Calls += b.c.Calls
			c.Failures += b.c.Failures
			c.Slow += b.c.Slow
		}
	}
	return c
}

func mod(a, n int64) int64 {
	m := a % n
	if m < 0 {
		m += n
	}
	return m
}
