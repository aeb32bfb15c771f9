package scaling

import "time"

// burst measures how far a model's arrivals have recently run above the
// demand estimate, over the next half window: burstStride times per half
// window a sample opens with the demand estimate D then (the larger of the window's rate
// and its fifth's), counts the arrivals of the following half window and,
// as that ends, yields its excess, arrivals per second over D minus 1
// (clamped to [0, maxBurst]). Excess reads the highest excess of the
// samples that ended within the last burstMemory windows (a minute at the
// default window).
//
// Why (docs/BENCHMARKS.md §11): since the admission queue refuses an
// arrival whose estimated wait passes its delay target (500 ms by
// default), it absorbs only half a second of excess, so a ramp is refused
// once the next few seconds bring more than the pool serves — while the
// decayed rates still describe the seconds before. The estimate's own
// recent shortfall over that horizon is how much more to plan for: it is
// the trace's burstiness and the ramp's growth together, measured rather
// than a constant; it is near 0 for steady or falling demand, and what a
// ramp taught is kept for the memory, so the next ramp is planned for too.
//
// Warm-up: the rates start from 0 and read low for a few windows, which
// would read as a burst, so no sample opens before burstWarmup windows
// after the model's first arrival. A surge after a quiet spell is not
// skipped: it is demand running above its estimate.
//
// Memory is bounded: burstOpen open samples, and at most one ended sample
// per stride over the memory (a monotonic queue, as Hold keeps); work per
// arrival is O(burstOpen) amortised.
type burst struct {
	open  [burstOpen]burstSample
	n     int       // open samples, oldest first
	next  time.Time // when the next sample may open
	first time.Time // the model's first arrival
	highs []burstHigh
}

// burstHigh is an ended sample's excess; highs holds them strictly
// decreasing from front to back, each the highest since its end.
type burstHigh struct {
	end    time.Time
	excess float64
}

type burstSample struct {
	start  time.Time
	demand float64 // requests per second planned for at start
	count  float64 // arrivals after start
}

const (
	// burstStride splits the horizon (half a window) into this many
	// overlapping samples.
	burstStride = 5
	burstOpen   = burstStride + 1
	// burstMemory is how many windows an excess is remembered for.
	burstMemory = 6
	// burstWarmup is how many windows after the first arrival samples
	// start: the rates' warm-up has faded to e^-3 = 5% by then.
	burstWarmup = 3
	// maxBurst caps one sample's excess: a step from near nothing reads
	// as any multiple of its estimate, but it plans for at most twice the
	// demand.
	maxBurst = 1.0
)

func burstHorizon(window time.Duration) time.Duration { return window / 2 }

// arrived counts an arrival at now, demand being the model's demand
// estimate with it counted.
func (b *burst) arrived(now time.Time, demand float64, window time.Duration) {
	b.close(now, window)
	for i := range b.n {
		b.open[i].count++
	}
	if b.first.IsZero() {
		b.first = now
	}
	if now.Sub(b.first) < burstWarmup*window || now.Before(b.next) || b.n == burstOpen || demand <= 0 {
		return
	}
	b.open[b.n] = burstSample{start: now, demand: demand}
	b.n++
	b.next = now.Add(burstHorizon(window) / burstStride)
}

// close ends the samples whose horizon ended before now.
func (b *burst) close(now time.Time, window time.Duration) {
	h := burstHorizon(window)
	done := 0
	for done < b.n && b.open[done].start.Add(h).Before(now) {
		s := b.open[done]
		b.remember(s.start.Add(h), min(max(s.count/h.Seconds()/s.demand-1, 0), maxBurst), window)
		done++
	}
	if done > 0 {
		copy(b.open[:], b.open[done:b.n])
		b.n -= done
	}
}

// remember adds an ended sample's excess to the monotonic queue.
func (b *burst) remember(end time.Time, excess float64, window time.Duration) {
	for len(b.highs) > 0 && b.highs[len(b.highs)-1].excess <= excess {
		b.highs = b.highs[:len(b.highs)-1]
	}
	b.highs = append(b.highs, burstHigh{end: end, excess: excess})
	b.forget(end, window)
}

// forget drops the samples that ended before the memory.
func (b *burst) forget(now time.Time, window time.Duration) {
	drop := 0
	for drop < len(b.highs) && !b.highs[drop].end.After(now.Add(-burstMemory*window)) {
		drop++
	}
	if drop > 0 {
		b.highs = append(b.highs[:0], b.highs[drop:]...)
	}
}

// Excess reads the highest excess of the samples ended within the memory.
func (b *burst) Excess(now time.Time, window time.Duration) float64 {
	b.close(now, window)
	b.forget(now, window)
	if len(b.highs) == 0 {
		return 0
	}
	return b.highs[0].excess
}
