package app

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// A pool of thousands of discovered backends is rebuilt at each change
// in work that grows with its size, not its square: each backend was
// looked up by scanning the running runtime and the pool built so far,
// copying the runtime's backend list at each question (4,000 backends
// through the binary: 1.1 s to build, 1.5 s for each change of one).
// Counted in what the rebuild allocates, which the machine's load does
// not change (its CPU time does: a bound on the ratio of two CPU times
// failed under load, 11.1 times against 10): 4 times the backends must
// allocate well under 16 times as often and as much. The copy per
// lookup is seen here (15 times the bytes); a scan that allocates
// nothing is not, and BenchmarkRebuildOfBackends times the rebuild.
func TestBuildOfThousandsOfBackendsIsLinear(t *testing.T) {
	cfg := linearConfig(t)
	rebuild := func(n int) (allocs, bytes uint64) {
		cur, next, deps := rebuildSetup(t, cfg, n)
		var built *Built
		allocs, bytes = allocated(func() { built = next(deps, cur) })
		if got := len(built.Runtime.Pools["m1"].Backends); got != n-1 {
			t.Fatalf("%d backends after the change, want %d", got, n-1)
		}
		if built.Runtime.Pools["m1"].Backends[0] != cur.Runtime.Pools["m1"].Backends[1] {
			t.Error("a backend that stayed was built anew")
		}
		return allocs, bytes
	}
	smallN, smallB := rebuild(1000)
	bigN, bigB := rebuild(4000)
	t.Logf("rebuild after a change: 1,000 backends %d allocations, %d bytes; 4,000 backends %d, %d", smallN, smallB, bigN, bigB)
	if bigN > 8*smallN || bigB > 8*smallB {
		t.Errorf("4 times the backends allocated %.1f times as often, %.1f times the bytes: it grows as the square",
			float64(bigN)/float64(smallN), float64(bigB)/float64(smallB))
	}
}

// BenchmarkRebuildOfBackends is the time of a rebuild after a change of
// one backend in n, 1,000 and 4,000 (on a loaded 2-CPU machine: 11 and
// 92 ms; with a scan of the running pool per backend: 25 and 195 ms; with
// the copy per lookup of old, seconds). A figure for people: the ratio
// moves with the machine's load too much to be asserted.
func BenchmarkRebuildOfBackends(b *testing.B) {
	cfg := linearConfig(b)
	for _, n := range []int{1000, 4000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			cur, next, deps := rebuildSetup(b, cfg, n)
			for b.Loop() {
				next(deps, cur)
			}
		})
	}
}

func linearConfig(t testing.TB) *config.Config {
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := "listen: 127.0.0.1:0\n" + noProbes + "queue: {enabled: false}\nmodels:\n  - name: m1\n    discovery:\n" +
		"      - type: dns\n        name: llm.test\n        port: 8000\n"
	writeFile(t, path, src)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// rebuildSetup builds a runtime of n discovered backends and commits it;
// next builds the one after the first backend went away.
func rebuildSetup(t testing.TB, cfg *config.Config, n int) (*Built, func(Deps, *Built) *Built, Deps) {
	set := make([]endpoint.Spec, n)
	for i := range set {
		set[i] = endpoint.Spec{URL: fmt.Sprintf("http://10.%d.%d.%d:8000", i/62500, i/250%250, i%250+1), Weight: 1}.Normalized()
	}
	found := set
	deps := Deps{Registry: prometheus.NewRegistry(), Transport: proxy.NewTransportCache(), Rand: routing.NewRand(1),
		Now: time.Now, Discovered: func(string) []endpoint.Spec { return found }}
	cur, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	cur.Commit()
	found = set[1:] // one left
	next := func(deps Deps, cur *Built) *Built {
		built, err := Build(cfg, deps, cur)
		if err != nil {
			t.Fatal(err)
		}
		return built
	}
	return cur, next, deps
}

// allocated is the number and the bytes of the allocations f makes (and
// whatever else runs meanwhile: little, against thousands).
func allocated(f func()) (n, bytes uint64) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs, after.TotalAlloc - before.TotalAlloc
}
