package app

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		floor, live, roots uint64
		want               int
	}{
		{64 * mib, 0, 0, 100},              // no collection yet: Go's default
		{64 * mib, 4 * mib, 0, 1500},       // goal 4 MiB x 16 = the floor
		{64 * mib, 4 * mib, 2 * mib, 1000}, // goal 4 + 6 x 10 = the floor
		{64 * mib, 32 * mib, 0, 100},       // twice the live heap reaches the floor
		{64 * mib, 31 * mib, 2 * mib, 100}, // and with the roots
		{64 * mib, 500 * mib, 0, 100},      // a large cache: as without a floor
	} {
		if got := gcPercentFor(c.floor, c.live, c.roots); got != c.want {
			t.Errorf("gcPercentFor(%d MiB, %d MiB, roots %d MiB) = %d, want %d", c.floor/mib, c.live/mib, c.roots/mib, got, c.want)
		}
	}
}

func TestGCFloorFor(t *testing.T) {
	if got := gcFloorFor(0); got != gcHeapFloor {
		t.Errorf("no memory limit: floor %d, want %d", got, gcHeapFloor)
	}
	if got := gcFloorFor(1 << 30); got != gcHeapFloor {
		t.Errorf("1 GiB limit: floor %d, want %d", got, gcHeapFloor)
	}
	if got := gcFloorFor(32 << 20); got != 16<<20 {
		t.Errorf("32 MiB limit: floor %d, want half of it", got)
	}
}

// gogc reads the runtime's GC percentage.
func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// gcCycles is the number of collections ended.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func TestGCFloorRetunesAfterEachCollectionAndStops(t *testing.T) {
	if g := startGCFloor(gcHeapFloor, true); g != nil {
		t.Fatal("GOGC set in the environment: the floor must stay off")
	}
	// A floor far above the test binary's live heap, whatever it is.
	const floor = 256 << 20
	g := startGCFloor(floor, false)
	defer g.stop()
	// Undo what start set: only the retune after a collection can set it
	// again.
	debug.SetGCPercent(100)
	// Collect until the retune for the last collection has run and no
	// collection ended since: the goal is then the one that retune set.
	// The retune runs on the runtime's cleanup goroutine after the
	// collection; on a loaded machine the next collection could start
	// first (a runtime.Gosched here did not make it wait), and a retune
	// that runs while a collection marks was for the one before: read
	// after that collection, the goal mixed two collections' heaps (210
	// MiB for a floor of 256 in a -shuffle run of the suite).
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatalf("no retune found for the collection before it in 100 collections (last retune for collection %d, %d ended)", g.measured(), gcCycles())
		}
		runtime.GC()
		c := gcCycles()
		// The bound only moves on to another collection: a sentinel
		// allocated while this one marked survived it.
		for end := time.Now().Add(time.Second); g.measured() < c && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
		metrics.Read(s)
		if g.measured() == c && gcCycles() == c {
			break
		}
	}
	goal, live, roots := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()+s[3].Value.Uint64()
	got := gogc()
	if want := gcPercentFor(floor, live, roots); got != uint64(want) {
		t.Fatalf("GOGC %d after a collection that left %d bytes live (roots %d); want %d", got, live, roots, want)
	}
	// The goal the runtime computes from that GOGC (mgcpacer.go, commit:
	// the larger of live + (live + roots) x GOGC/100 and its heap minimum
	// scaled by GOGC/100) is the floor, give or take the rounding.
	pacer := max(live+(live+roots)*got/100, goHeapMinimum*got/100)
	if pacer < floor*95/100 || pacer > floor*105/100 {
		t.Fatalf("GOGC %d makes a heap goal of %d MiB, want the floor %d MiB within 5%% (live %d bytes, roots %d)", got, pacer>>20, floor>>20, live, roots)
	}
	// And the runtime took it. It may raise its goal above it (a minimum
	// distance for its sweeper, or runway, when the heap grew fast since
	// the collection), never lower it: only a memory limit would.
	if goal < floor*95/100 {
		t.Fatalf("heap goal %d MiB, want at least the floor %d MiB (live %d bytes, GOGC %d)", goal>>20, floor>>20, live, got)
	}
	g.stop()
	runtime.GC()
	runtime.GC()
	if got := gogc(); got != 100 {
		t.Fatalf("stopped: GOGC %d, want Go's default 100", got)
	}
}
