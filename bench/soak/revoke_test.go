package main

import (
	"strings"
	"testing"
)

// The key is off one reload in four, starting on, and the config lists it
// exactly when on.
func TestRevokeKeySchedule(t *testing.T) {
	var got []bool
	for n := 0; n <= 9; n++ {
		got = append(got, revokeKeyOn(n))
	}
	want := []bool{true, false, true, true, true, false, true, true, true, false}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("revokeKeyOn over reloads 0..9 = %v, want %v", got, want)
		}
	}
	r := &rig{revoke: true, perIPRate: []int{20, 25}, simAddrs: []string{"a", "b"}}
	if c := r.config(); !strings.Contains(c, "key: "+revokeKey) || !strings.Contains(c, "tenant: "+revokeTenant) {
		t.Fatalf("reload 0's config lists no key:\n%s", c)
	}
	r.reloads = 1
	if c := r.config(); strings.Contains(c, revokeKey) || !strings.Contains(c, "key: "+keepKey) {
		t.Fatalf("reload 1's config lists the removed key, or not the kept one (open mode):\n%s", c)
	}
	r.revoke = false
	if c := (&rig{perIPRate: []int{20, 25}, simAddrs: []string{"a"}}).config(); strings.Contains(c, "auth:") {
		t.Fatalf("without --revoke the config has an auth section:\n%s", c)
	}
}

// Only succeeded and failed api_key_revoked pass; a job ended otherwise,
// or never seen to end, fails the run.
func TestRevokeTallyJudgesEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		ends []string
		ok   bool
	}{
		{"run or revoked", []string{revokeOutcome("succeeded", ""), revokeOutcome("failed", "api_key_revoked"), revokeOutcome("failed", "api_key_revoked")}, true},
		{"failed otherwise", []string{revokeOutcome("succeeded", ""), revokeOutcome("failed", "backend_error"), revokeOutcome("failed", "api_key_revoked")}, false},
		{"cancelled", []string{revokeOutcome("cancelled", ""), "succeeded", "succeeded"}, false},
		{"hung", []string{"succeeded", "failed api_key_revoked", "not done in 6m (job_x)"}, false},
		{"lost", []string{"succeeded", "failed api_key_revoked", "poll 404 (job_x)"}, false},
	} {
		tl := newRevokeTally()
		tl.accepted = 3
		for _, e := range tc.ends {
			tl.end(e)
		}
		var b strings.Builder
		if ok := tl.report(&b); ok != tc.ok {
			t.Errorf("%s: report ok %v, want %v:\n%s", tc.name, ok, tc.ok, b.String())
		}
	}
	if revokeOutcome("queued", "") != "" || revokeOutcome("in_progress", "") != "" {
		t.Fatal("a job not ended has an outcome")
	}
}
