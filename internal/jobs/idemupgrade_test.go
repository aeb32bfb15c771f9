package jobs

import (
	"context"
	"encoding/json"
	"testing"
)

// A job submitted with an Idempotency-Key by a binary from before request
// fingerprints (its record has none) is still replayed to a resubmission
// with the key after an upgrade, whatever its body: the old binary stored
// nothing to compare, and refusing it would turn a client's retry across
// the upgrade into a 422.
func TestIdempotencyKeyOfPreFingerprintRecordReplays(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	sp := spec("acme")
	sp.IdempotencyKey = "before-upgrade"
	a, _, err := s.Submit(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.jobs.Get(ctx, singleKey(a.ID))
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	if _, ok := rec["fingerprint"]; !ok {
		t.Fatalf("a keyed job's record has no fingerprint: %s", e.Value())
	}
	delete(rec, "fingerprint")
	b, _ := json.Marshal(rec)
	if _, err := s.jobs.Update(ctx, singleKey(a.ID), b, e.Revision()); err != nil {
		t.Fatal(err)
	}
	other := sp
	other.Body = []byte(`{"model":"m1","n":2}`)
	for _, resent := range []Spec{sp, other} {
		j, existing, err := s.Submit(ctx, resent)
		if err != nil || !existing || j.ID != a.ID {
			t.Fatalf("resubmit %s: %+v existing=%v %v; want %s replayed", resent.Body, j, existing, err, a.ID)
		}
	}
}
