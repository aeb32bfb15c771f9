package jobs

import (
	"testing"
)

// The revocation record is shared by every Store on one server (a
// restarted gateway, another replica): a tenant recorded by one is seen
// by another, cleared by either, and a tenant never recorded (or one of
// the same hash prefix's neighbours) is not revoked.
func TestRevocationRecordIsShared(t *testing.T) {
	a, srv := newStore(t, nil)
	b := openStore(t, testOptions(srv.ClientURL()))
	ctx := t.Context()
	if err := a.RecordRevoked(ctx, []string{"gone", "acme corp/ü"}); err != nil {
		t.Fatal(err)
	}
	for tenant, want := range map[string]bool{"gone": true, "acme corp/ü": true, "kept": false, "gone ": false} {
		if got, err := b.Revoked(ctx, tenant); err != nil || got != want {
			t.Errorf("Revoked(%q) from another store: %v, %v; want %v", tenant, got, err, want)
		}
	}
	if err := b.ClearRevoked(ctx, []string{"gone", "never-recorded"}); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Revoked(ctx, "gone"); err != nil || got {
		t.Errorf("gone after the clear: %v, %v; want not revoked", got, err)
	}
	if got, err := a.Revoked(ctx, "acme corp/ü"); err != nil || !got {
		t.Errorf("acme corp/ü after another's clear: %v, %v; want revoked", got, err)
	}
	// Recording again after a clear works (a key removed a second time).
	if err := a.RecordRevoked(ctx, []string{"gone"}); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Revoked(ctx, "gone"); err != nil || !got {
		t.Errorf("gone recorded again: %v, %v; want revoked", got, err)
	}
}

// A token namespace's record is apart from every tenant's: "jwt:p:" is
// both the namespace of an issuer named p and the tenant of the claim
// "p:" of a single issuer, and recording the one must not revoke the
// other.
func TestSpaceRevocationIsApartFromTenants(t *testing.T) {
	a, srv := newStore(t, nil)
	b := openStore(t, testOptions(srv.ClientURL()))
	ctx := t.Context()
	if err := a.RecordRevokedSpaces(ctx, []string{"jwt:p:"}); err != nil {
		t.Fatal(err)
	}
	if got, err := b.RevokedSpace(ctx, "jwt:p:"); err != nil || !got {
		t.Errorf("RevokedSpace(jwt:p:) from another store: %v, %v; want revoked", got, err)
	}
	if got, err := b.Revoked(ctx, "jwt:p:"); err != nil || got {
		t.Errorf("Revoked(tenant jwt:p:): %v, %v; want not revoked", got, err)
	}
	if got, err := b.RevokedSpace(ctx, "jwt:"); err != nil || got {
		t.Errorf("RevokedSpace(jwt:): %v, %v; want not revoked", got, err)
	}
	if err := b.ClearRevokedSpaces(ctx, []string{"jwt:p:"}); err != nil {
		t.Fatal(err)
	}
	if got, err := a.RevokedSpace(ctx, "jwt:p:"); err != nil || got {
		t.Errorf("after the clear: %v, %v; want not revoked", got, err)
	}
}
