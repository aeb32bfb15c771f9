package endpoint

import (
	"math"
	"time"
)

// ttftWindow keeps the recent times to first byte (first token for
// streams) of one backend's successful requests as a histogram, for the
// p50 / p99 shown on /status and the dashboard. The peak EWMA and the
// typical latency steer routing and deadlines; an operator asks a
// different question — "how slow is it for most, and for the unlucky" —
// which only a distribution answers.
//
// Two fixed-size histograms rotate every ttftSpan: quantiles read the
// current one merged with the previous, so they cover the last ttftSpan
// to 2×ttftSpan and forget a burst within a minute of its end. Buckets
// are log-spaced by ttftGrowth from ttftFirstBound, so a quantile is
// exact to within one bucket (it reports the bucket's upper bound: at most 25%
// above the true value) from a millisecond to minutes, in
// constant memory and an array increment per sample. Guarded by the
// backend's mutex.
type ttftWindow struct {
	cur, prev [ttftBuckets]uint32
	curStart  time.Time
}

const (
	ttftSpan       = 30 * time.Second
	ttftFirstBound = time.Millisecond
	ttftGrowth     = 1.25
	ttftBuckets    = 64 // the last bound is about 1.5 hours: everything above lands there
)

// ttftBound is bucket i's upper bound.
func ttftBound(i int) time.Duration {
	return time.Duration(float64(ttftFirstBound) * math.Pow(ttftGrowth, float64(i)))
}

func ttftBucket(d time.Duration) int {
	if d <= ttftFirstBound {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(ttftFirstBound)) / math.Log(ttftGrowth)))
	return min(i, ttftBuckets-1)
}

// rotate moves the window forward to now: a span gone by shifts cur into
// prev; two or more gone by clear both.
func (w *ttftWindow) rotate(now time.Time) {
	switch age := now.Sub(w.curStart); {
	case w.curStart.IsZero():
		w.curStart = now
	case age >= 2*ttftSpan:
		w.cur, w.prev = [ttftBuckets]uint32{}, [ttftBuckets]uint32{}
		w.curStart = now
	case age >= ttftSpan:
		w.prev, w.cur = w.cur, [ttftBuckets]uint32{}
		w.curStart = w.curStart.Add(ttftSpan)
	}
}

func (w *ttftWindow) observe(now time.Time, d time.Duration) {
	w.rotate(now)
	w.cur[ttftBucket(d)]++
}

// addTo adds the window's samples at now to sum.
func (w *ttftWindow) addTo(now time.Time, sum *[ttftBuckets]uint64) {
	w.rotate(now)
	for i := range sum {
		sum[i] += uint64(w.cur[i]) + uint64(w.prev[i])
	}
}

// quantiles returns the upper bounds of the buckets holding each q in
// qs (0 < q <= 1) and the number of samples; zeros with no sample.
func quantiles(merged *[ttftBuckets]uint64, qs ...float64) (out []time.Duration, n uint64) {
	for _, c := range merged {
		n += c
	}
	out = make([]time.Duration, len(qs))
	if n == 0 {
		return out, 0
	}
	for k, q := range qs {
		rank := uint64(math.Ceil(q * float64(n)))
		var seen uint64
		for i, c := range merged {
			if seen += c; seen >= max(rank, 1) {
				out[k] = ttftBound(i)
				break
			}
		}
	}
	return out, n
}

// TTFT summarises a backend's recent times to first byte.
type TTFT struct {
	P50, P99 time.Duration
	// Samples is how many successful requests the quantiles cover (the
	// last 30 to 60 seconds); 0: none, and the quantiles are 0.
	Samples uint64
}

// RecentTTFT returns the p50 and p99 time to first byte (first token for
// streams; for a non-streamed answer, its whole time per output token, see
// ReleaseAnswer) of the backend's successful requests over the last 30 to
// 60 seconds, each at most 25% above the true value (a log bucket's bound).
func (b *Backend) RecentTTFT(now time.Time) TTFT {
	return PoolTTFT(now, []*Backend{b})
}

// PoolTTFT is RecentTTFT over the requests of all of bs: a model's
// quantiles, which no combination of its backends' quantiles gives.
func PoolTTFT(now time.Time, bs []*Backend) TTFT {
	var sum [ttftBuckets]uint64
	for _, b := range bs {
		b.mu.Lock()
		b.ttft.addTo(now, &sum)
		b.mu.Unlock()
	}
	q, n := quantiles(&sum, 0.5, 0.99)
	return TTFT{P50: q[0], P99: q[1], Samples: n}
}
