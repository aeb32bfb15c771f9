package proxy

import (
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfterBounded(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"3": 3 * time.Second, "1.5": 1500 * time.Millisecond, "-1": 0, "NaN": 0, "Inf": maxRetryAfter, "1e300": maxRetryAfter,
		"1e400": maxRetryAfter, "soon": 0, now.Add(time.Minute).Format(http.TimeFormat): time.Minute,
		now.Add(1000 * time.Hour).Format(http.TimeFormat): maxRetryAfter, now.Add(-time.Minute).Format(http.TimeFormat): 0,
	} {
		if got := ParseRetryAfter(v, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

// FuzzParseRetryAfter: a backend's Retry-After, whatever it says, is read
// as a wait in [0, 24h].
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "120", "1.5", "-3", "Inf", "NaN", "1e308", "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"} {
		f.Add(s)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := ParseRetryAfter(v, now); d < 0 || d > maxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q) = %v", v, d)
		}
	})
}
