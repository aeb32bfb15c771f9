package rate

import (
	"strings"
	"testing"
)

func TestParseNginx(t *testing.T) {
	good := []struct {
		in   string
		want Limit
		str  string
	}{
		{"rate=10r/s burst=20", Limit{Rate: 10, Burst: 20}, "rate=10r/s burst=20"},
		{"rate=10r/s burst=20 nodelay", Limit{Rate: 10, Burst: 20, Delay: NoDelay}, "rate=10r/s burst=20 nodelay"},
		{"10r/s burst=20 nodelay", Limit{Rate: 10, Burst: 20, Delay: NoDelay}, "rate=10r/s burst=20 nodelay"},
		{"rate=10r/s burst=20 delay=8", Limit{Rate: 10, Burst: 20, Delay: 8}, "rate=10r/s burst=20 delay=8"},
		{"60r/m", Limit{Rate: 1}, "rate=1r/s"},
		{"30r/m", Limit{Rate: 0.5}, "rate=30r/m"},
		{"burst=5 rate=1000r/s", Limit{Rate: 1000, Burst: 5}, "rate=1000r/s burst=5"},
		{"  rate=2.5r/s\tnodelay ", Limit{Rate: 2.5, Delay: NoDelay}, "rate=2.5r/s nodelay"},
		{"off", Limit{}, "off"},
	}
	for _, g := range good {
		l, err := ParseNginx(g.in)
		if err != nil {
			t.Errorf("ParseNginx(%q): %v", g.in, err)
			continue
		}
		if l != g.want || l.String() != g.str {
			t.Errorf("ParseNginx(%q) = %+v (%s), want %+v (%s)", g.in, l, l, g.want, g.str)
		}
	}
	bad := map[string]string{
		"":                              "missing rate",
		"burst=5":                       "missing rate",
		"rate=10":                       "10r/s",
		"rate=0r/s":                     "must be positive (for no limit write off)",
		"rate=-1r/s":                    "must be positive",
		"rate=0r/m":                     "must be positive",
		"rate=10r/h":                    "10r/s",
		"rate=NaNr/s":                   "10r/s",
		"rate=10r/s burst=-1":           "non-negative",
		"rate=10r/s burst=1.5":          "non-negative",
		"rate=10r/s nodelay delay=3":    "twice",
		"rate=10r/s rate=5r/s":          "twice",
		"rate=10r/s zone=one":           "unknown",
		"rate=1e9r/s":                   "out of range",
		"rate=1r/m burst=1000000000000": "refill",
	}
	for in, want := range bad {
		if _, err := ParseNginx(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseNginx(%q) error %v, want one mentioning %q", in, err, want)
		}
	}
}

func TestLimitShare(t *testing.T) {
	l, err := ParseNginx("rate=30r/s burst=29 delay=10")
	if err != nil {
		t.Fatal(err)
	}
	s := l.Share(3)
	if s.Rate != 10 || s.Capacity() != 10 || s.Delay != 4 {
		t.Fatalf("share of 3 = %+v", s)
	}
	if one := PerSecond(1, 0).Share(3); one.Capacity() != 1 {
		t.Fatalf("share may not drop capacity to zero: %+v", one)
	}
}

func FuzzParseNginx(f *testing.F) {
	for _, s := range []string{"rate=10r/s burst=20", "10r/s burst=20 nodelay", "rate=600r/m delay=3", "off", "7r/m", "0.001r/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseNginx(s)
		if err != nil {
			return
		}
		if !l.IsZero() {
			if err := l.Validate(); err != nil {
				t.Fatalf("ParseNginx(%q) accepted an invalid limit %+v: %v", s, l, err)
			}
		}
		back, err := ParseNginx(l.String())
		if err != nil || back != l {
			t.Fatalf("round trip %q -> %+v -> %q -> %+v, %v", s, l, l.String(), back, err)
		}
	})
}
