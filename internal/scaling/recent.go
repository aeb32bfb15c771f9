package scaling

import (
	"math"
	"time"
)

// Little's law (desired = rate × the time a request holds its slot) holds
// for a rate that lasts the hold. A rate read over a window shorter than
// the hold is not known to: two long requests and then 30 one-token ones
// in a second on a 2-slot backend (μ 0.13 req/s, a 15 s hold) read 12
// req/s over a fifth of the window, 96 backends of demand and 115 of burst
// for 32 requests, which 16 backends serve at once (docs/RELIABILITY.md,
// "Forecasting and scaling signals"). So a model's arrivals are also
// counted over the last few minutes, and a rate read over a window shorter
// than the hold plans for no more requests in service than
//
//	C = max over h in (0, W] of  A(W−h) + min(rate × h, A(h))
//
// where W is the hold and A(s) the arrivals of the last s seconds: the
// requests of the last W−h still in service h from now, and the arrivals
// of the next h at the rate, but no more than came in the last h (a rate
// seen for T seconds is expected to go on for T more, and no longer). For
// a rate that has lasted W this is rate × W, Little's law unchanged; a
// burst of N requests reads as at most 2N requests in service (the N, and
// as many again); a rate that started T ago plans for 2 × rate × T until
// T reaches W/2, so a real ramp of long requests is planned for at twice
// the requests it has brought so far, ahead of them, and reaches Little's
// law within half the hold.

// recentBucket is the arrival log's resolution; recentBuckets how many it
// keeps (10 minutes): a hold longer than that is not bounded.
const (
	recentBucket  = 250 * time.Millisecond
	recentBuckets = 2400
)

// recentLog counts a model's arrivals per recentBucket over the last
// recentBuckets buckets, a ring indexed by bucket number. Fixed memory
// (9.6 KB a model), O(1) amortised per arrival.
type recentLog struct {
	counts [recentBuckets]uint32
	newest int64 // bucket number of the newest bucket written
	any    bool
}

func bucketOf(t time.Time) int64 { return t.UnixNano() / int64(recentBucket) }

func ring(k int64) int { return int(((k % recentBuckets) + recentBuckets) % recentBuckets) }

// add counts an arrival at now. One dated before the log's newest bucket
// (concurrent requests) counts in its own bucket while the log still
// holds it. One dated before the log's reach is the wall clock stepped
// back past it (bucketOf reads the wall clock): the log starts again
// from it. Dropping it, as this did, dropped every arrival until the
// clock caught up with the step (an hour back: an hour of arrivals
// unseen, the plan bounded by the ones before the step).
func (l *recentLog) add(now time.Time) {
	k := bucketOf(now)
	if l.any && k <= l.newest-recentBuckets {
		clear(l.counts[:])
		l.newest = k
	}
	l.advance(k)
	if c := &l.counts[ring(k)]; *c < math.MaxUint32 {
		*c++
	}
}

// advance makes bucket k the newest, emptying the buckets it passes.
func (l *recentLog) advance(k int64) {
	if !l.any {
		l.newest, l.any = k, true
		return
	}
	if k <= l.newest {
		return
	}
	if k-l.newest >= recentBuckets {
		clear(l.counts[:])
	} else {
		for b := l.newest + 1; b <= k; b++ {
			l.counts[ring(b)] = 0
		}
	}
	l.newest = k
}

// read returns the log at now: Recent.Counts newest first, from now's
// bucket back, trimmed after the last non-zero one. Buckets after now (a
// clock stepped back) count as now's.
func (l *recentLog) read(now time.Time) Recent {
	k := bucketOf(now)
	r := Recent{Known: true, Elapsed: now.Sub(time.Unix(0, k*int64(recentBucket)))}
	if !l.any {
		return r
	}
	counts := make([]float64, 0, 64)
	var future float64
	for b := max(k+1, l.newest-recentBuckets+1); b <= l.newest; b++ {
		future += float64(l.counts[ring(b)])
	}
	last := -1
	for j := range recentBuckets {
		b := k - int64(j)
		c := future
		future = 0
		if b <= l.newest && b > l.newest-recentBuckets {
			c += float64(l.counts[ring(b)])
		}
		counts = append(counts, c)
		if c > 0 {
			last = j
		}
		if b <= l.newest-recentBuckets {
			break
		}
	}
	r.Counts = counts[:last+1]
	return r
}

// Recent is a model's arrivals per recentBucket, newest first: Counts[0]
// is now's bucket, Elapsed into it. Known false (a Reading built by hand):
// no arrivals are known and no rate is bounded by them.
type Recent struct {
	Known   bool
	Elapsed time.Duration
	Counts  []float64
}

// Span is how far back the log reaches.
func (r Recent) Span() time.Duration { return r.Elapsed + (recentBuckets-1)*recentBucket }

// within returns A(s), the arrivals of the last s: now's bucket whole,
// then whole buckets, then a share of the next (arrivals taken as even
// within a bucket). prefix[j] is Counts[0..j] summed.
func (r Recent) within(s float64, prefix []float64) float64 {
	if s <= 0 || len(prefix) == 0 {
		return 0
	}
	rest := s - r.Elapsed.Seconds()
	if rest <= 0 {
		return prefix[0]
	}
	w := recentBucket.Seconds()
	j := int(rest / w)
	if j+1 >= len(prefix) {
		return prefix[len(prefix)-1]
	}
	return prefix[j] + r.Counts[j+1]*(rest-float64(j)*w)/w
}

// inService is C above: the requests in service the arrivals and rate
// can fill over a hold of hold seconds; ok false when the log does not
// reach back a hold (no bound then).
func (r Recent) inService(rate, hold float64) (c float64, ok bool) {
	if !r.Known || hold <= 0 || hold > r.Span().Seconds() || math.IsInf(hold, 0) || math.IsNaN(hold) {
		return 0, false
	}
	prefix := make([]float64, len(r.Counts))
	sum := 0.0
	for j, n := range r.Counts {
		sum += n
		prefix[j] = sum
	}
	f := func(h float64) float64 {
		return r.within(hold-h, prefix) + min(rate*h, r.within(h, prefix))
	}
	// Both parts are linear between bucket edges, so the maximum is at an
	// edge of one or the other (or where rate × h meets A(h): within a
	// bucket's arrivals of it).
	best := f(hold)
	w, e := recentBucket.Seconds(), r.Elapsed.Seconds()
	for h := e; h < hold; h += w {
		best = max(best, f(h), f(hold-h))
	}
	return best, true
}
