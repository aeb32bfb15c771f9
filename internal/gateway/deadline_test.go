package gateway

import (
	"hash/maphash"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"
)

func TestDeadlineFromObjective(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	r, _ := http.NewRequest("POST", "/v1/chat/completions", nil)
	until, latest, _ := deadline(r, start, 2*time.Second, 200*time.Millisecond, 0)
	if until.Sub(start) != 1200*time.Millisecond || latest.Sub(start) != 1800*time.Millisecond {
		t.Fatalf("until %v latest %v, want 1.2s (2/3 of 1.8s) and 1.8s", until.Sub(start), latest.Sub(start))
	}
	// A slow pool leaves at least a third of the objective to wait.
	until, latest, _ = deadline(r, start, 2*time.Second, 3*time.Second, 0)
	if until.Sub(start) != 2*time.Second/3 || latest != until {
		t.Fatalf("until %v latest %v", until.Sub(start), latest.Sub(start))
	}
	// The client may ask for less, never for more.
	for h, want := range map[string]time.Duration{"600ms": 400 * time.Millisecond, "600": 400 * time.Millisecond, "1m": 2 * time.Second * 2 / 3} {
		r.Header.Set("X-Sluice-Max-Wait", h)
		if until, _, _ = deadline(r, start, 2*time.Second, 0, 0); until.Sub(start) != want {
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
		until, latest, _ := deadline(r, start, 2*time.Second, time.Duration(ttft), 0)
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
	// An audio form kept in blocks hashes as the whole body, and its
	// content, not only its blocks' count, tells forms apart.
	form := g.fingerprint("t1", "/v1/audio/transcriptions", []byte("--b\r\nfile one"))
	if form != g.fingerprint("t1", "/v1/audio/transcriptions", []byte("--b\r\n"), []byte("file one")) {
		t.Fatal("a body in blocks must have the fingerprint of the whole")
	}
	if form == g.fingerprint("t1", "/v1/audio/transcriptions", []byte("--b\r\n"), []byte("file two")) {
		t.Fatal("different forms in blocks, same fingerprint")
	}
}

// TestAdmitStageTerms: the admit stage gives a live request its class's
// deadline (the client may shorten it) and a job none — a free slot now or
// a refusal — whatever the header says.
func TestAdmitStageTerms(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	pool := NewPool(PoolParts{Model: &config.Model{Name: "m1"}, SLO: config.SLO{Interactive: 2 * time.Second, Batch: time.Minute},
		Now: func() time.Time { return start }})
	r, _ := http.NewRequest("POST", "/v1/chat/completions", nil)
	r.Header.Set("X-Sluice-Max-Wait", "600ms")
	live := &exchange{exchangeState: exchangeState{r: r, pool: pool, rec: record{start: start}}}
	if !(admitStage{}).serve(live) || live.call.until.Sub(start) != 400*time.Millisecond || live.call.latest.Sub(start) != 600*time.Millisecond {
		t.Fatalf("live: until %v latest %v, want 400ms and 600ms", live.call.until.Sub(start), live.call.latest.Sub(start))
	}
	batch := &exchange{exchangeState: exchangeState{r: r, pool: pool, rec: record{start: start}, id: identity{class: admission.Batch}}}
	batch.r = r.Clone(r.Context())
	batch.r.Header.Del("X-Sluice-Max-Wait")
	if (admitStage{}).serve(batch); batch.call.until.Sub(start) != 40*time.Second {
		t.Fatalf("batch class: until %v, want 40s (2/3 of its objective)", batch.call.until.Sub(start))
	}
	job := &exchange{exchangeState: exchangeState{r: r, pool: pool, rec: record{start: start}, job: &jobCall{}}}
	if !(admitStage{}).serve(job) || !job.call.until.Equal(start) || !job.call.latest.Equal(start) {
		t.Fatalf("job: until %v latest %v, want both at its start", job.call.until, job.call.latest)
	}
}
