package bench

import (
	"math"
	"math/bits"
	"slices"
	"sync/atomic"
	"time"
)

// Summary describes a latency distribution in milliseconds.
type Summary struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// summarize sorts ds in place and describes it. Percentiles use the
// nearest-rank method: the p-th percentile is a value that was observed.
func summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	slices.Sort(ds)
	var sum float64
	for _, d := range ds {
		sum += float64(d)
	}
	return Summary{
		Count: len(ds),
		Mean:  ms(time.Duration(sum / float64(len(ds)))),
		P50:   ms(percentile(ds, 50)),
		P90:   ms(percentile(ds, 90)),
		P99:   ms(percentile(ds, 99)),
		Max:   ms(ds[len(ds)-1]),
	}
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted: the smallest value with at least p% of the values at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	return sorted[min(max(rank, 1), n)-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// JainIndex is Jain's fairness index (Σx)² / (n·Σx²) of xs: 1 when all are
// equal, 1/n when one takes everything. It is 0 for no values and 1 when
// every value is 0 (all got the same: nothing). Negative values count as 0.
func JainIndex(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var sum, sq float64
	for _, x := range xs {
		x = max(x, 0)
		sum += x
		sq += x * x
	}
	if sq == 0 {
		return 1
	}
	return sum * sum / (float64(len(xs)) * sq)
}

// histogram is a lock-free log-linear histogram of durations with 64
// sub-buckets per power of two (relative error under 1.6%). It holds
// inter-token gaps, of which a run can have millions: too many to keep.
type histogram struct {
	counts   [histBuckets]atomic.Int64
	n, sum   atomic.Int64
	maxValue atomic.Int64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histBuckets = 2*histSub + (63-histSubBits-1)*histSub
)

func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	return 2*histSub + (shift-1)*histSub + int(v>>uint(shift)) - histSub
}

// histMid is the middle of bucket i's value range.
func histMid(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	shift := uint((i-2*histSub)/histSub + 1)
	m := uint64((i-2*histSub)%histSub + histSub)
	return m<<shift + (uint64(1)<<shift)/2
}

func (h *histogram) add(d time.Duration) {
	d = max(d, 0)
	h.counts[histIndex(uint64(d))].Add(1)
	h.n.Add(1)
	h.sum.Add(int64(d))
	for {
		m := h.maxValue.Load()
		if int64(d) <= m || h.maxValue.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

func (h *histogram) quantile(p float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(p/100*float64(n))), 1)
	var seen int64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return min(time.Duration(histMid(i)), time.Duration(h.maxValue.Load()))
		}
	}
	return time.Duration(h.maxValue.Load())
}

func (h *histogram) summary() Summary {
	n := h.n.Load()
	if n == 0 {
		return Summary{}
	}
	return Summary{
		Count: int(n),
		Mean:  ms(time.Duration(h.sum.Load() / n)),
		P50:   ms(h.quantile(50)),
		P90:   ms(h.quantile(90)),
		P99:   ms(h.quantile(99)),
		Max:   ms(time.Duration(h.maxValue.Load())),
	}
}
