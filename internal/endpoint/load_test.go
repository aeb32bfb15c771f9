package endpoint

import (
	"testing"
	"time"
)

// ReportedRoom is the engine's reported batch bound less what other
// clients run or queue there, from a fresh reading with nothing waiting:
// this gateway's own requests at the scrape (InflightAtScrape) are not
// others'; a queue, a missing bound or a stale reading give no room.
func TestReportedRoom(t *testing.T) {
	b, err := New(Spec{URL: "http://b"}, HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1000, 0)
	fresh := Load{Running: 5, BatchBound: 16, At: at, Expires: at.Add(3 * time.Second), InflightAtScrape: 3}
	cases := []struct {
		name string
		edit func(*Load)
		now  time.Time
		room int
		ok   bool
	}{
		{"two of five run by others", nil, at, 14, true},
		{"none by others", func(l *Load) { l.InflightAtScrape = 5 }, at, 16, true},
		{"others fill it", func(l *Load) { l.Running, l.InflightAtScrape = 20, 0 }, at, 0, true},
		{"a queue: full whatever the bound", func(l *Load) { l.Waiting = 1 }, at, 0, false},
		{"no bound reported", func(l *Load) { l.BatchBound = 0 }, at, 0, false},
		{"stale", nil, at.Add(3 * time.Second), 0, false},
		// An engine that exports "unlimited" as Python's sys.maxsize:
		// 9223372036854775807 reads as 2^63 in a float64, past int's
		// range, whose conversion gave the minimum int on amd64: room 0,
		// a ceiling of what was in flight that stopped every probe.
		{"a bound past int's range", func(l *Load) { l.BatchBound = 9223372036854775807 }, at, maxReportedBound - 2, true},
		{"a huge bound", func(l *Load) { l.BatchBound = 1e30 }, at, maxReportedBound - 2, true},
	}
	for _, c := range cases {
		l := fresh
		if c.edit != nil {
			c.edit(&l)
		}
		b.SetLoad(l)
		room, ok := b.ReportedRoom(c.now)
		if ok != c.ok || (ok && room != c.room) {
			t.Errorf("%s: room %d, ok %v; want %d, %v", c.name, room, ok, c.room, c.ok)
		}
	}
	if _, ok := (&Backend{}).ReportedRoom(at); ok {
		t.Error("room before any reading")
	}
}
