package endpoint

import (
	"math"
	"time"
)

// Latency is the peak-EWMA estimate of time to first byte at now; 0 when no
// sample has been seen yet.
func (b *Backend) Latency(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ewma.value(now)
}

// TypicalLatency is a plain moving average of time to first byte over about
// the last 1/typicalWeight successful requests; 0 before the first. Unlike
// Latency, which holds a slow sample for seconds on purpose (a picker should
// avoid a backend that just turned slow), it says how long a request sent
// now usually takes to start: what a deadline must leave room for.
func (b *Backend) TypicalLatency() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return time.Duration(b.typical)
}

// TailLatency is a high percentile of the time to first byte, estimated as
// TypicalLatency plus twice its mean deviation (about the 95th percentile
// of a normal distribution; TCP's retransmission timeout, RFC 6298, takes
// four); 0 before the first sample. A request still waiting this long is
// in the backend's tail: when to hedge it ("The Tail at Scale").
func (b *Backend) TailLatency() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return time.Duration(b.typical + 2*b.deviation)
}

// RecentLatency is the median of the backend's last three latency samples
// (with fewer, the smallest): how slow it is now, like the peak EWMA after
// two slow answers in a row, but not after a single spike; and unlike the
// typical latency, which needs a dozen samples to move by half, it follows
// a backend that turned slow within two. 0 before the first sample.
func (b *Backend) RecentLatency() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch n := min(b.lastN, len(b.last)); n {
	case 0:
		return 0
	case 1:
		return b.last[0]
	case 2:
		return min(b.last[0], b.last[1])
	}
	x, y, z := b.last[0], b.last[1], b.last[2]
	return max(min(x, y), min(max(x, y), z))
}

// LastLatency is the backend's latest latency sample (a time to first
// token; a withdrawn race's lower bound is none, see WithdrawnOf); 0 before
// the first. One sample is noise to routing, which judges an outlier by
// RecentLatency; a hedge, which costs only spare capacity, may act on it
// (proxy.hedgeDelay).
func (b *Backend) LastLatency() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lastN == 0 {
		return 0
	}
	return b.last[(b.lastN-1)%len(b.last)]
}

// typicalWeight is TypicalLatency's weight of each new sample.
const typicalWeight = 0.05

// latencyEWMA is Finagle's peak EWMA: it jumps up to a slower sample at once
// (so a backend that turns slow is avoided immediately) and decays toward
// faster samples with time constant tau. Like Finagle's, the estimate also
// decays while no sample arrives: otherwise one slow sample would keep a
// backend's cost high forever, p2c would stop sending it requests, and no
// new sample could ever bring it down.
type latencyEWMA struct {
	val  float64 // nanoseconds
	last time.Time
}

const ewmaTau = 10 * time.Second

func (e *latencyEWMA) observe(now time.Time, sample time.Duration) {
	s := float64(sample)
	if e.last.IsZero() {
		e.val, e.last = s, now
		return
	}
	if s > e.val {
		e.val = s
	} else {
		w := e.decay(now)
		e.val = e.val*w + s*(1-w)
	}
	if now.After(e.last) {
		e.last = now
	}
}

// decay is the weight left to the old estimate at now. Concurrent Releases
// can report slightly out of order; a negative age would give a weight above
// 1 and push the estimate away from the sample, so it is clamped to 0.
func (e *latencyEWMA) decay(now time.Time) float64 {
	age := now.Sub(e.last)
	if age < 0 {
		age = 0
	}
	return math.Exp(-float64(age) / float64(ewmaTau))
}

func (e *latencyEWMA) value(now time.Time) time.Duration {
	return time.Duration(e.val * e.decay(now))
}

// learnLatencyLocked feeds one time-to-first-byte (or first token) sample
// to the peak EWMA and the typical latency. b.mu is held.
func (b *Backend) learnLatencyLocked(now time.Time, latency time.Duration) {
	b.ewma.observe(now, latency)
	b.ttft.observe(now, latency)
	b.last[b.lastN%len(b.last)] = latency
	b.lastN++
	if b.typical == 0 {
		// As RFC 6298 starts RTTVAR: half the first sample, so the tail
		// is not mistaken for the typical latency (and half the streams
		// hedged) until deviations are learned.
		b.typical, b.deviation = float64(latency), float64(latency)/2
		return
	}
	// TCP's smoothed round-trip time and its mean deviation (RFC 6298),
	// with the typical latency's weight for both.
	b.deviation += typicalWeight * (math.Abs(float64(latency)-b.typical) - b.deviation)
	b.typical += typicalWeight * (float64(latency) - b.typical)
}
