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
	b := mustNew(t, Spec{URL: "http://b"}, HealthPolicy{})
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
		// A queue in one reading: its waiting counted as others' run
		// (5 running + 1 waiting, 3 of them this gateway's): room 13.
		{"a queue in one reading", func(l *Load) { l.Waiting = 1 }, at, 13, true},
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

// TestReportedRoomQueueInTwoReadings: an engine that queues in two
// readings in a row is full whatever its bound says (its KV cache can fill
// first); a queue in one reading alone is most often the requests just
// sent, which the engine takes at its next step, and gives room less what
// waits. A queue that cleared gives room again, and one whose earlier
// reading had gone stale is a first reading.
func TestReportedRoomQueueInTwoReadings(t *testing.T) {
	b := mustNew(t, Spec{URL: "http://b"}, HealthPolicy{})
	at := time.Unix(1000, 0)
	read := func(sec int, waiting float64) (int, bool) {
		now := at.Add(time.Duration(sec) * time.Second)
		b.SetLoad(Load{Running: 4, Waiting: waiting, BatchBound: 16, At: now, Expires: now.Add(3 * time.Second)})
		return b.ReportedRoom(now)
	}
	steps := []struct {
		sec     int
		waiting float64
		room    int
		ok      bool
	}{
		{0, 0, 12, true},
		{1, 2, 10, true},  // queued once: the two waiting count as others'
		{2, 2, 0, false},  // queued twice in a row: full
		{3, 0, 12, true},  // cleared
		{4, 1, 11, true},  // queued once again
		{10, 1, 11, true}, // the reading before went stale: a first reading
	}
	for _, s := range steps {
		if room, ok := read(s.sec, s.waiting); ok != s.ok || ok && room != s.room {
			t.Errorf("at %d s with %v waiting: room %d, ok %v; want %d, %v", s.sec, s.waiting, room, ok, s.room, s.ok)
		}
	}
}
