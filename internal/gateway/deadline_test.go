package gateway

import (
	"hash/maphash"
	"net/http"
	"testing"
	"time"
)

func TestDeadlineFromObjective(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	r, _ := http.NewRequest("POST", "/v1/chat/completions", nil)
	until, latest := deadline(r, start, 2*time.Second, 200*time.Millisecond)
	if until.Sub(start) != 1200*time.Millisecond || latest.Sub(start) != 1800*time.Millisecond {
		t.Fatalf("until %v latest %v, want 1.2s (2/3 of 1.8s) and 1.8s", until.Sub(start), latest.Sub(start))
	}
	// A slow pool leaves at least a third of the objective to wait.
	until, latest = deadline(r, start, 2*time.Second, 3*time.Second)
	if until.Sub(start) != 2*time.Second/3 || latest != until {
		t.Fatalf("until %v latest %v", until.Sub(start), latest.Sub(start))
	}
	// The client may ask for less, never for more.
	for h, want := range map[string]time.Duration{"600ms": 400 * time.Millisecond, "600": 400 * time.Millisecond, "1m": 2 * time.Second * 2 / 3} {
		r.Header.Set("X-Sluice-Max-Wait", h)
		if until, _ = deadline(r, start, 2*time.Second, 0); until.Sub(start) != want {
			t.Fatalf("X-Sluice-Max-Wait %s: wait %v, want %v", h, until.Sub(start), want)
		}
	}
}

// The header is untrusted: whatever it holds, the wait is not negative, no
// longer than the configured objective, and latest is never before until.
func FuzzDeadline(f *testing.F) {
	for _, s := range []string{"", "2s", "1500", "-5s", "0", "9999999999999999999", "1h", " 3s ", "NaN", "1ns"} {
		f.Add(s, int64(200*time.Millisecond))
	}
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, h string, ttft int64) {
		r, _ := http.NewRequest("POST", "/", nil)
		r.Header.Set("X-Sluice-Max-Wait", h)
		if ttft < 0 {
			ttft = -ttft
		}
		until, latest := deadline(r, start, 2*time.Second, time.Duration(ttft))
		if until.Before(start) || until.Sub(start) > 2*time.Second || latest.Before(until) || latest.Sub(start) > 2*time.Second {
			t.Fatalf("header %q ttft %v: until %v latest %v", h, time.Duration(ttft), until.Sub(start), latest.Sub(start))
		}
	})
}

func TestFingerprintSeparatesTenantsAndBodies(t *testing.T) {
	g := &Gateway{seed: maphash.MakeSeed()}
	a := g.fingerprint("t1", "/v1/chat/completions", []byte(`{"a":1}`))
	if a == 0 || a != g.fingerprint("t1", "/v1/chat/completions", []byte(`{"a":1}`)) {
		t.Fatal("the same request must have the same, non-zero fingerprint")
	}
	for _, other := range []uint64{
		g.fingerprint("t2", "/v1/chat/completions", []byte(`{"a":1}`)),
		g.fingerprint("t1", "/v1/completions", []byte(`{"a":1}`)),
		g.fingerprint("t1", "/v1/chat/completions", []byte(`{"a":2}`)),
	} {
		if other == a {
			t.Fatal("different tenant, path or body, same fingerprint")
		}
	}
}
