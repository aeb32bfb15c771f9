package forecast

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// countsOwner uses Counts the way Forecaster does: the fast path without
// its lock, the slow path and interval closes under it. closed keeps each
// closed interval's tallies.
type countsOwner struct {
	iv     time.Duration
	mu     sync.Mutex
	start  time.Time
	open   Counts[string]
	closed []map[string][2]float64 // per interval: key -> requests, tokens
}

func (o *countsOwner) observe(t time.Time, key string, tokens float64) {
	k := [1]string{key}
	if o.open.TryAdd(t, k[:], 1, tokens) {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.advance(t)
	o.open.AddLocked(key, 1, tokens)
}

func (o *countsOwner) advance(t time.Time) {
	if o.start.IsZero() {
		o.start = t.Truncate(o.iv)
		o.open.Open(o.start.Add(o.iv), nil)
		return
	}
	for !t.Before(o.start.Add(o.iv)) {
		got := map[string][2]float64{}
		for k, tl := range o.open.Close() {
			if tl.Seen() {
				got[k] = [2]float64{tl.Requests(), tl.Tokens()}
			}
		}
		o.closed = append(o.closed, got)
		o.start = o.start.Add(o.iv)
		keys := []string{"shared"} // made ahead, as a series' key is
		o.open.Open(o.start.Add(o.iv), keys)
	}
}

// Arrivals from many goroutines across interval boundaries, while another
// closes intervals too, are each counted exactly once, and never in an
// interval that ended before they arrived (a late one counts in the
// interval open when it is counted, as it did under one lock).
func TestCountsConcurrentAcrossBoundary(t *testing.T) {
	const (
		workers = 8
		each    = 3000
		step    = time.Millisecond
	)
	o := &countsOwner{iv: time.Second}
	t0 := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	o.mu.Lock()
	o.advance(t0)
	o.mu.Unlock()
	// Arrival j of worker w is at t0 + j ms: each worker crosses three
	// boundaries, the workers racing each other and the closer.
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := fmt.Sprintf("own-%d", w) // a key only the slow path makes
			for j := range each {
				at := t0.Add(time.Duration(j) * step)
				o.observe(at, "shared", 2)
				if j%3 == 0 {
					o.observe(at, own, 1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for s := 1; s <= 3; s++ {
			o.mu.Lock()
			o.advance(t0.Add(time.Duration(s) * time.Second))
			o.mu.Unlock()
		}
	}()
	wg.Wait()
	o.mu.Lock()
	o.advance(t0.Add(10 * time.Second))
	o.mu.Unlock()

	var shared [2]float64
	own := map[string]float64{}
	for i, iv := range o.closed {
		for k, c := range iv {
			if k == "shared" {
				shared[0] += c[0]
				shared[1] += c[1]
				// At most the arrivals timed before this interval's end
				// can have been counted by its close.
				if before := float64(workers * min(each, (i+1)*1000)); shared[0] > before {
					t.Errorf("by the close of interval %d: %v counted, only %v had arrived", i, shared[0], before)
				}
				continue
			}
			own[k] += c[0]
		}
	}
	if shared != [2]float64{workers * each, 2 * workers * each} {
		t.Errorf("shared: counted %v requests, %v tokens; want %d, %d", shared[0], shared[1], workers*each, 2*workers*each)
	}
	for w := range workers {
		if k := fmt.Sprintf("own-%d", w); own[k] != each/3 {
			t.Errorf("%s: counted %v, want %d", k, own[k], each/3)
		}
	}
}

// Concurrent Observe and Advance through boundaries leave the forecaster
// with every series the single-locked one would make (models and busy
// tenants) and nothing else.
func TestForecasterConcurrentObserve(t *testing.T) {
	f, err := New(Config{Interval: time.Minute, MaxSeries: 8, MinTenantRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// 2 requests a second each for tenant "busy", 1 a minute for "quiet".
			for j := range 3 * 120 {
				at := t0.Add(time.Duration(j) * 500 * time.Millisecond)
				f.Observe(at, Key{Model: "m", Tenant: "busy"}, 1, 10)
				if j == 0 && w == 0 {
					f.Observe(at, Key{Model: "m", Tenant: "quiet"}, 1, 10)
				}
			}
		}()
	}
	wg.Wait()
	f.Advance(t0.Add(4 * time.Minute))
	got := map[Key]bool{}
	for _, k := range f.Keys() {
		got[k] = true
	}
	want := map[Key]bool{{Model: "m"}: true, {Model: "m", Tenant: "busy"}: true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("series %v, want %v", got, want)
	}
	fc, ok := f.Forecast(Key{Model: "m", Tenant: "busy"}, time.Minute)
	if !ok || !(fc.Requests.Mean > 0) {
		t.Errorf("busy's forecast %+v, %v: want a positive rate", fc, ok)
	}
}
