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
		floor, live uint64
		want        int
	}{
		{64 * mib, 0, 100},         // no collection yet: Go's default
		{64 * mib, 4 * mib, 1500},  // goal 4 MiB x 16 = the floor
		{64 * mib, 32 * mib, 100},  // twice the live heap reaches the floor
		{64 * mib, 500 * mib, 100}, // a large cache: as without a floor
	} {
		if got := gcPercentFor(c.floor, c.live); got != c.want {
			t.Errorf("gcPercentFor(%d MiB, %d MiB) = %d, want %d", c.floor/mib, c.live/mib, got, c.want)
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
	const floor = 1 << 30
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
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	want := gcPercentFor(floor, s[0].Value.Uint64())
	if got := gogc(); got <= 100 || want <= 100 {
		t.Fatalf("after collections with a live heap of %d bytes: GOGC %d, want above 100 (about %d)", s[0].Value.Uint64(), got, want)
	}
	g.stop()
	runtime.GC()
	runtime.GC()
	if got := gogc(); got != 100 {
		t.Fatalf("stopped: GOGC %d, want Go's default 100", got)
	}
}
