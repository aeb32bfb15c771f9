//go:build linux

package app

import (
	"fmt"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// A pool of thousands of discovered backends is rebuilt at each change
// in time that grows with its size, not its square: each backend was
// looked up by scanning the running runtime and the pool built so far
// (4,000 backends through the binary: 1.1 s to build, 1.5 s for each
// change of one). Measured as this thread's CPU time, which the machine's
// other work does not lengthen, and as a ratio: 4 times the backends
// must cost well under 16 times the time.
func TestBuildOfThousandsOfBackendsIsLinear(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, path, "listen: 127.0.0.1:0\nqueue: {enabled: false}\nmodels:\n  - name: m1\n    discovery:\n"+
		"      - type: dns\n        name: llm.test\n        port: 8000\n")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	rebuild := func(n int) time.Duration {
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
		start := threadCPU(t)
		next, err := Build(cfg, deps, cur)
		took := threadCPU(t) - start
		if err != nil {
			t.Fatal(err)
		}
		if got := len(next.Runtime.Pools["m1"].Backends); got != n-1 {
			t.Fatalf("%d backends after the change, want %d", got, n-1)
		}
		if next.Runtime.Pools["m1"].Backends[0] != cur.Runtime.Pools["m1"].Backends[1] {
			t.Error("a backend that stayed was built anew")
		}
		return took
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	small, big := rebuild(1000), rebuild(4000)
	t.Logf("rebuild after a change: 1,000 backends %v, 4,000 backends %v (CPU)", small, big)
	if big > 10*max(small, time.Millisecond) {
		t.Errorf("4 times the backends took %.1f times the CPU (%v, %v): it grows as the square", float64(big)/float64(small), small, big)
	}
}

// threadCPU is the CPU time this OS thread has used.
func threadCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		t.Skip("no per-thread CPU time here:", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rusageThread is RUSAGE_THREAD (Linux).
const rusageThread = 1
