package app

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// gcHeapFloor is the heap size below which the garbage collector does
// not run for a serving gateway: with Go's default (GOGC=100) the heap
// goal is twice the live heap, and a gateway's live heap is a few MiB
// (its code's tables, the job queue, metrics), so a collection ran every
// ~1,200 cache hits, each marking that whole live heap again: ~3 µs per
// hit in the collector against the bare net/http handler's ~1 µs
// (docs/BENCHMARKS.md §9). Below the floor the goal is the floor (a
// collection every ~12,000 hits); above it, twice the live heap as before,
// so a gateway holding much (a full response cache, a thousand stalled
// uploads) collects exactly as without it. It is small next to the
// response cache's default 256 MiB; a server.memory_limit below twice the
// floor lowers it to half that limit.
const gcHeapFloor = 32 << 20

// gcFloor keeps the heap goal at max(floor, 2 x live heap) by setting the
// GC percentage after every collection (runtime.AddCleanup on an object
// made unreachable for the purpose; the runtime runs the cleanup after
// the cycle that found it). The heap cannot outgrow the goal by more than
// one cycle's allocation before the next collection measures it again,
// so a live heap that grows fast still gets GOGC=100 at its next cycle.
// An operator's GOGC (environment) turns it off: their setting stands.
type gcFloor struct {
	mu      sync.Mutex
	floor   uint64 // 0: stopped
	samples []metrics.Sample
	// cycle is the number of collections ended when the last retune read
	// the live heap: the collection its setting is for.
	cycle uint64
}

// startGCFloor starts keeping the floor (nil when GOGC is set).
func startGCFloor(floor uint64, gogcSet bool) *gcFloor {
	if gogcSet || floor == 0 {
		return nil
	}
	g := &gcFloor{floor: floor, samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}}
	g.retune()
	return g
}

// setFloor changes the floor (a reload changed server.memory_limit).
func (g *gcFloor) setFloor(floor uint64) {
	if g == nil || floor == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.floor != 0 {
		g.floor = floor
	}
}

// stop restores Go's default; a cleanup still pending finds it stopped.
func (g *gcFloor) stop() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.floor = 0
	debug.SetGCPercent(100)
}

// retune sets the percentage for the live heap the last collection left,
// and asks to be called after the next one.
func (g *gcFloor) retune() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.floor == 0 {
		return
	}
	metrics.Read(g.samples)
	roots := g.samples[1].Value.Uint64() + g.samples[2].Value.Uint64()
	debug.SetGCPercent(gcPercentFor(g.floor, g.samples[0].Value.Uint64(), roots))
	g.cycle = g.samples[3].Value.Uint64()
	// The sentinel is unreachable at once; the cleanup runs after the
	// collection that finds it.
	runtime.AddCleanup(new(gcSentinel), (*gcFloor).retune, g)
}

// measured is the collection the last retune was for (the number of
// collections ended when it read the heap). A retune that runs while the
// next collection marks was for the one before: its sentinel, allocated
// black, survives that collection, so the retune after it comes one
// collection later.
func (g *gcFloor) measured() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cycle
}

// gcSentinel is the object whose collection marks a GC cycle. It holds a
// pointer so that it is never put in a tiny block shared with other small
// pointer-free objects, which would keep it, and its cleanup, alive (as a
// [16]byte did in one build of the gateway).
type gcSentinel struct {
	_ *gcSentinel
	_ [8]byte
}

// goHeapMinimum is the runtime's heap minimum at GOGC=100 (runtime
// mgcpacer.go, defaultHeapMinimum): the goal is never below it scaled by
// GOGC/100.
const goHeapMinimum = 4 << 20

// gcPercentFor is the GOGC that makes the heap goal reach floor. The
// runtime's goal is the larger of live + (live + roots) x GOGC/100, roots
// being the goroutine stacks and globals it scans, and its heap minimum,
// 4 MiB x GOGC/100. Counting only the live heap set a small gateway's goal
// at 45-86 MiB instead of 32 (branch i12-p99's runtime traces): the
// minimum, scaled by a GOGC in the thousands, was the goal. Never below
// Go's default 100, which is also what it is before a first collection
// has measured the live heap.
func gcPercentFor(floor, live, roots uint64) int {
	if live == 0 || live*2+roots >= floor {
		return 100
	}
	p := (floor - live) * 100 / (live + roots)
	return int(max(min(p, floor*100/goHeapMinimum), 100))
}

// gcFloorFor is the floor under a memory limit (0: none): at most half
// of it, so the limit, not the floor, decides when memory is short.
func gcFloorFor(memoryLimit int64) uint64 {
	if memoryLimit > 0 && uint64(memoryLimit)/2 < gcHeapFloor {
		return uint64(memoryLimit) / 2
	}
	return gcHeapFloor
}
