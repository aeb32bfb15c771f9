package forecast

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

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
