package app

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
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

func TestGCFloorRetunesAfterEachCollectionAndStops(t *testing.T) {
	if g := startGCFloor(gcHeapFloor, true); g != nil {
		t.Fatal("GOGC set in the environment: the floor must stay off")
	}
	// A floor far above the test binary's live heap, whatever it is.
	const floor = 256 << 20
	g := startGCFloor(floor, false)
	defer g.stop()
	// Undo what start set: only the retune after a collection can set it
	// again. The cleanup runs after the cycle, on the runtime's goroutine:
	// collect until it has.
	debug.SetGCPercent(100)
	for i := 0; i < 100 && gogc() == 100; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	// The heap goal the runtime computed from it is the floor, give or
	// take what the roots moved since the last collection measured them.
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if got := gogc(); got <= 100 {
		t.Fatalf("after collections with a live heap of %d bytes: GOGC %d, want above 100", s[1].Value.Uint64(), got)
	}
	if goal := s[0].Value.Uint64(); goal < floor*95/100 || goal > floor*105/100 {
		t.Fatalf("heap goal %d MiB, want the floor %d MiB within 5%% (live %d bytes, GOGC %d)", goal>>20, floor>>20, s[1].Value.Uint64(), gogc())
	}
	g.stop()
	runtime.GC()
	runtime.GC()
	if got := gogc(); got != 100 {
		t.Fatalf("stopped: GOGC %d, want Go's default 100", got)
	}
}
