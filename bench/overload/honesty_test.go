package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
)

// TestHonestyCountsByAdvisedMoment checks the classification of refused
// clients: the target counts only retries advised to come back after the
// burst's end; retries advised into the burst are counted apart, and the
// all-retries share keeps both.
func TestHonestyCountsByAdvisedMoment(t *testing.T) {
	const end = 10 * time.Second
	s := time.Second
	refused := func(at, advised time.Duration, retried, ok bool) hOutcome {
		return hOutcome{status: http.StatusServiceUnavailable, ra: "1", refusedAt: at, advised: advised,
			retried: retried, retryOK: ok, retryRef: retried && !ok}
	}
	outs := []hOutcome{
		{status: http.StatusOK, ok: true},
		refused(2*s, 3*s, true, false),          // advised at 5 s: during the burst, refused again
		refused(2*s, 3*s, true, true),           // during, served
		refused(4*s, 6*s, true, false),          // advised at exactly the end: still during
		refused(9*s, 2*s, true, true),           // advised at 11 s: after
		refused(9*s, 2*s, true, true),           // after
		refused(12*s, 1*s, true, true),          // refused in the calm, after
		refused(8*s, 5*s, true, false),          // after, refused again
		refused(8*s, 90*s, false, false),        // beyond the cap: not retried
		{status: http.StatusServiceUnavailable}, // no Retry-After
		{status: http.StatusBadGateway},         // other failure
	}
	outs[8].capped = true
	var h Honesty
	h.count(outs, end)
	if h.FirstOK != 1 || h.RefusedWithRA != 8 || h.RefusedNoRA != 1 || h.OtherFailures != 1 || h.BeyondCap != 1 {
		t.Fatalf("first attempts: %+v", h)
	}
	if h.DuringBurst != 3 || h.BeyondBurst != 5 {
		t.Errorf("advised during / after = %d / %d, want 3 / 5", h.DuringBurst, h.BeyondBurst)
	}
	if h.DuringRetried != 3 || h.DuringOK != 1 {
		t.Errorf("during: retried %d ok %d, want 3, 1", h.DuringRetried, h.DuringOK)
	}
	if h.AfterRetried != 4 || h.AfterOK != 3 || h.AfterShare != 0.75 {
		t.Errorf("after: retried %d ok %d share %v, want 4, 3, 0.75", h.AfterRetried, h.AfterOK, h.AfterShare)
	}
	if h.Retried != 7 || h.RetriedOK != 4 || h.RetriedRefused != 3 {
		t.Errorf("all: retried %d ok %d refused again %d, want 7, 4, 3", h.Retried, h.RetriedOK, h.RetriedRefused)
	}
	if len(h.Refused) != 8 || h.Refused[3].AdvisedAtS != 11 || !h.Refused[3].AfterBurst || h.Refused[2].AfterBurst {
		t.Errorf("per-client records: %+v", h.Refused)
	}

	// The target is judged on the population, with the all-retries
	// share printed beside it.
	g := &GoodputReport{Honesty: &h}
	var got *Target
	ts := goodputTargets(g)
	for i := range ts {
		if strings.HasPrefix(ts[i].Name, "retries advised after") {
			got = &ts[i]
		}
	}
	if got == nil {
		t.Fatalf("no honesty target in %+v", ts)
	}
	if got.Pass || !strings.Contains(got.Measured, "75.0% (3 of 4)") || !strings.Contains(got.Measured, "all retries 57.1% (4 of 7)") {
		t.Errorf("target = %+v", *got)
	}
	var md strings.Builder
	ew := &benchkit.ErrWriter{W: &md}
	writeHonesty(ew, &h)
	if !strings.Contains(md.String(), "3 of 4 succeeded (75.0%)") {
		t.Errorf("report lacks the target population:\n%s", md.String())
	}
}
