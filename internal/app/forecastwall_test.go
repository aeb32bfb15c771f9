package app

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestWallBeforeIsBefore: the arrival's inline compare (wallBefore, with
// the end held as its Unix seconds and nanoseconds) orders every arrival
// time as time.Time.Before does against an end without a monotonic
// reading, as arm keeps it: times with and without a monotonic reading,
// the same second, a nanosecond either side, the zero time, and dates
// before 1970.
func TestWallBeforeIsBefore(t *testing.T) {
	base := time.Now() // a monotonic reading
	r := rand.New(rand.NewPCG(1, 2))
	ends := []time.Time{{}, base.Round(0), base.Truncate(time.Second), time.Unix(-5, 7), time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)}
	for range 200 {
		ends = append(ends, base.Add(time.Duration(r.Int64N(int64(4*time.Second))-int64(2*time.Second))).Round(0))
	}
	for _, end := range ends {
		sec, nsec := end.Unix(), end.Nanosecond()
		for _, d := range []time.Duration{-time.Second, -1, 0, 1, time.Second, time.Duration(r.Int64N(int64(time.Hour)))} {
			for _, at := range []time.Time{end.Add(d), base.Add(end.Sub(base) + d), end.Add(d).In(time.FixedZone("x", 3600))} {
				if got, want := wallBefore(at, sec, nsec), at.Before(end); got != want {
					t.Fatalf("wallBefore(%v, end %v) = %v, Before %v", at, end, got, want)
				}
			}
		}
	}
}
