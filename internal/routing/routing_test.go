package routing

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/outcome"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func fixedClock(t time.Time) Clock { return func() time.Time { return t } }

// mk builds a backend named name (its host) with the given weight and
// concurrency cap; passive policy: one failure ejects for a minute, busy
// lasts a minute.
func mk(t testing.TB, name string, weight, maxConc int) *endpoint.Backend {
	t.Helper()
	b, err := endpoint.New(
		endpoint.Spec{URL: "http://" + name, Weight: weight, MaxConcurrency: maxConc},
		endpoint.HealthPolicy{MaxFails: 1, FailTimeout: time.Minute, BusyPenalty: time.Minute},
	)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mkPool(t testing.TB, names ...string) []*endpoint.Backend {
	t.Helper()
	bs := make([]*endpoint.Backend, len(names))
	for i, n := range names {
		bs[i] = mk(t, n, 1, 0)
	}
	return bs
}

func newPicker(t testing.TB, name string, seed uint64) Picker {
	t.Helper()
	p, err := New(name, NewRand(seed), fixedClock(t0))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func nameList(bs []*endpoint.Backend) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Name()
	}
	return out
}

// acquireN marks n requests outstanding on b.
func acquireN(t testing.TB, b *endpoint.Backend, n int) {
	t.Helper()
	for range n {
		if !b.Acquire() {
			t.Fatalf("%s: Acquire refused", b.Name())
		}
	}
}

func TestNew(t *testing.T) {
	want := []string{"least_conn", "least_load", "p2c_ewma", "prefix_affinity", "prefix_affinity+least_load", "random", "round_robin", "weighted"}
	if got := PolicyNames(); !slices.Equal(got, want) {
		t.Fatalf("PolicyNames() = %v, want %v", got, want)
	}
	for _, n := range want {
		if p, err := New(n, NewRand(1), fixedClock(t0)); err != nil || p == nil {
			t.Errorf("New(%q) = %v, %v", n, p, err)
		}
	}
	for _, bad := range []string{"", "nope", "Round_Robin", "least-conn", " weighted"} {
		p, err := New(bad, NewRand(1), fixedClock(t0))
		if err == nil || p != nil {
			t.Errorf("New(%q) = %v, nil; want error", bad, p)
			continue
		}
		if !strings.Contains(err.Error(), "unknown policy") || !strings.Contains(err.Error(), "p2c_ewma") {
			t.Errorf("New(%q) error %q should name the valid policies", bad, err)
		}
	}
}

// TestPickSingleCandidate: the Picker contract allows one candidate.
func TestPickSingleCandidate(t *testing.T) {
	a := mk(t, "a", 1, 0)
	for _, n := range PolicyNames() {
		t.Run(n, func(t *testing.T) {
			if got := newPicker(t, n, 1).Pick(&Request{}, []*endpoint.Backend{a}); got != a {
				t.Errorf("Pick = %v, want the only candidate", got)
			}
		})
	}
}

// recordingPicker records the candidates it is offered and picks the last.
type recordingPicker struct {
	calls int
	seen  []string
}

func (r *recordingPicker) Pick(_ *Request, c []*endpoint.Backend) *endpoint.Backend {
	r.calls++
	r.seen = nameList(c)
	return c[len(c)-1]
}

func TestSelect(t *testing.T) {
	type pool = map[string]*endpoint.Backend
	fail := func(b *endpoint.Backend) { b.Observe(t0, outcome.Failure, 0, 0) }
	busy := func(b *endpoint.Backend) { b.Observe(t0, outcome.Busy, 0, 0) }
	full := func(b *endpoint.Backend) { b.Acquire() } // cap is 1
	down := func(b *endpoint.Backend) { b.SetProbeHealthy(false) }
	tests := []struct {
		name  string
		prep  func(p pool)
		tried []string
		want  []string // candidates Select chooses among; empty = nil result
	}{
		{"all healthy", func(pool) {}, nil, []string{"a", "b", "c"}},
		{"tried excluded", func(pool) {}, []string{"a"}, []string{"b", "c"}},
		{"ejected excluded", func(p pool) { fail(p["a"]) }, nil, []string{"b", "c"}},
		{"probe-down excluded", func(p pool) { down(p["b"]) }, nil, []string{"a", "c"}},
		{"full excluded", func(p pool) { full(p["c"]) }, nil, []string{"a", "b"}},
		{"busy deprioritised", func(p pool) { busy(p["a"]) }, nil, []string{"b", "c"}},
		{"one healthy left, busy ignored", func(p pool) { busy(p["a"]); fail(p["b"]) }, nil, []string{"c"}},
		{"busy when healthy ones are full", func(p pool) { busy(p["a"]); full(p["b"]); full(p["c"]) }, nil, []string{"a"}},
		{"busy when healthy ones are gone", func(p pool) { busy(p["a"]); busy(p["b"]); fail(p["c"]) }, nil, []string{"a", "b"}},
		{"busy when healthy ones were tried", func(p pool) { busy(p["a"]) }, []string{"b", "c"}, []string{"a"}},
		{"full busy excluded", func(p pool) { busy(p["a"]); full(p["a"]); down(p["b"]); fail(p["c"]) }, nil, nil},
		{"tried busy excluded", func(p pool) { busy(p["a"]); fail(p["b"]); fail(p["c"]) }, []string{"a"}, nil},
		{"all tried", func(pool) {}, []string{"a", "b", "c"}, nil},
		{"all ejected or down", func(p pool) { fail(p["a"]); fail(p["b"]); down(p["c"]) }, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := []*endpoint.Backend{mk(t, "a", 1, 1), mk(t, "b", 1, 1), mk(t, "c", 1, 1)}
			p := pool{"a": bs[0], "b": bs[1], "c": bs[2]}
			tt.prep(p)
			var tried []*endpoint.Backend
			for _, n := range tt.tried {
				tried = append(tried, p[n])
			}
			rp := &recordingPicker{}
			got := Select(t0, rp, &Request{}, bs, tried)
			switch len(tt.want) {
			case 0:
				if got != nil {
					t.Fatalf("Select = %s, want nil", got.Name())
				}
			case 1:
				if got != p[tt.want[0]] {
					t.Fatalf("Select = %v, want %s", got, tt.want[0])
				}
				if rp.calls != 0 {
					t.Errorf("picker called for a single candidate")
				}
			default:
				if !slices.Equal(rp.seen, tt.want) {
					t.Errorf("picker offered %v, want %v", rp.seen, tt.want)
				}
				if got != p[tt.want[len(tt.want)-1]] {
					t.Errorf("Select = %v, want the picker's choice", got)
				}
			}
		})
	}
	if got := Select(t0, &recordingPicker{}, &Request{}, nil, nil); got != nil {
		t.Errorf("Select on an empty pool = %v, want nil", got)
	}
}

// TestSelectConcurrent runs every policy from many goroutines while the
// backends' state changes underneath; run with -race.
func TestSelectConcurrent(t *testing.T) {
	for _, name := range PolicyNames() {
		t.Run(name, func(t *testing.T) {
			bs := []*endpoint.Backend{mk(t, "a", 3, 4), mk(t, "b", 1, 4), mk(t, "c", 2, 4), mk(t, "d", 1, 4)}
			p := newPicker(t, name, 42)
			var tick atomic.Int64
			var bad atomic.Value
			var wg sync.WaitGroup
			for w := range 16 {
				wg.Go(func() {
					for i := range 500 {
						now := t0.Add(time.Duration(tick.Add(1)) * time.Millisecond)
						tried := bs[w%len(bs) : w%len(bs)+1]
						b := Select(now, p, &Request{Model: "m"}, bs, tried)
						if b == nil {
							continue // all full or out for the moment
						}
						if b == tried[0] {
							bad.Store(fmt.Sprintf("picked tried backend %s", b.Name()))
						}
						if !b.Acquire() {
							continue // lost the race for the last slot
						}
						out := outcome.Success
						switch i % 97 {
						case 13:
							out = outcome.Busy
						case 51:
							out = outcome.Failure
						}
						b.Release(now, out, time.Duration(1+i%20)*time.Millisecond, 0)
						if i%101 == 0 {
							b.SetProbeHealthy(i%202 != 0)
						}
					}
				})
			}
			wg.Wait()
			if msg := bad.Load(); msg != nil {
				t.Fatal(msg)
			}
			for _, b := range bs {
				if b.Inflight() != 0 {
					t.Errorf("%s: inflight %d after all releases", b.Name(), b.Inflight())
				}
			}
		})
	}
}

func BenchmarkSelect(b *testing.B) {
	for _, name := range PolicyNames() {
		b.Run(name, func(b *testing.B) {
			var bs []*endpoint.Backend
			for i := range 8 {
				be := mk(b, fmt.Sprintf("b%d", i), 1+i%3, 0)
				be.Observe(t0, outcome.Success, time.Duration(10+i)*time.Millisecond, 0)
				bs = append(bs, be)
			}
			p := newPicker(b, name, 1)
			req := &Request{Model: "m"}
			b.ReportAllocs()
			for b.Loop() {
				if Select(t0, p, req, bs, nil) == nil {
					b.Fatal("nil")
				}
			}
		})
	}
}
