package admission

import (
	"math"
	"time"
)

// drainEstimator measures how fast one slot turns queued cost into served
// cost. It keeps exponentially decayed sums over completed tickets of cost,
// slot time held and count, so
//
//	perSlot  = Σcost / Σhold     cost units per slot-second
//	meanHold = Σhold / n         seconds one request holds a slot
//
// The queue's drain rate is perSlot × capacity. Measuring per slot-second
// rather than per wall second keeps idle periods (no work, no completions)
// from reading as a slow backend, and lets the estimate follow capacity at
// once when backends come and go. Decay is per completion, not per second,
// for the same reason. A prior worth one request seeds the sums, so the very
// first estimate is sane, and the first real completion replaces it: left
// to decay like a sample, a prior hold of 1s would outweigh the holds of
// hundreds of fast completions (an instant backend holds a slot ~0.1ms)
// and refuse requests at warm-up for a wait that never comes.
type drainEstimator struct {
	cost, hold, n float64
	keep          float64 // 1 − 1/samples: the weight left to the past per completion
	measured      bool    // a real completion was added: the prior is gone
}

func newDrainEstimator(priorPerSlot float64, priorHold time.Duration, samples int) drainEstimator {
	h := priorHold.Seconds()
	return drainEstimator{cost: priorPerSlot * h, hold: h, n: 1, keep: 1 - 1/float64(samples)}
}

func (d *drainEstimator) add(cost float64, hold time.Duration) {
	if !d.measured {
		d.cost, d.hold, d.n, d.measured = 0, 0, 0, true
	}
	d.cost = d.cost*d.keep + cost
	d.hold = d.hold*d.keep + max(hold, minHold).Seconds()
	d.n = d.n*d.keep + 1
}

// minHold floors a sample's hold time so the sums stay positive even when a
// fake clock releases tickets in zero time.
const minHold = time.Microsecond

func (d *drainEstimator) perSlot() float64 { return d.cost / d.hold }

func (d *drainEstimator) meanHold() float64 { return d.hold / d.n }

// maxWait stands for "never": no capacity, or no drain.
const maxWait = time.Duration(math.MaxInt64)

// waitFor estimates the time until a request with ahead cost in front of it
// is granted with capacity slots: the work ahead drains at perSlot×capacity,
// then one more slot must free (a mean hold spread over the slots).
func (d *drainEstimator) waitFor(ahead float64, capacity int) time.Duration {
	if capacity <= 0 {
		return maxWait
	}
	c := float64(capacity)
	secs := d.meanHold() / c
	if ahead > 0 {
		secs += ahead / (d.perSlot() * c)
	}
	if math.IsNaN(secs) || secs*float64(time.Second) >= float64(maxWait) {
		return maxWait
	}
	return time.Duration(secs * float64(time.Second))
}
