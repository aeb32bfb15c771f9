package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// The revocation record: the tenants a gateway's reload left without an
// API key, and the token namespaces whose issuer a reload removed, kept in
// the job store so that it outlives the process and is
// read by every process sharing the store. A gateway's own reload
// refuses such a tenant's jobs from memory (gateway lostTenants); the
// record is what a gateway restarted with the key removed, or a replica
// whose config never listed the key, finds. Each is a key of the batch
// bucket, r.<tenant hash> (batch.go's listings read t.<hash>.* and a.*
// only), and expires with the bucket's TTL, queue.retention: by then
// every job and batch the tenant had queued has expired too.
func revocationKey(tenant string) string { return "r." + tenantHash(tenant) }

// spaceRevocationKey is the record of a token namespace ("jwt:" or
// "jwt:<issuer name>:") a reload removed with its issuer: its tenants
// cannot be listed (any claim value is one), so the namespace is what is
// recorded, r.n.<hash>, apart from every tenant's r.<hash> (a namespace
// string can be a tenant's name: "jwt:p:" is the claim "p:" of a single
// issuer).
func spaceRevocationKey(prefix string) string { return "r.n." + tenantHash(prefix) }

// revocation is a record's value: when the tenant was revoked, for an
// operator reading the bucket. The tenant is in the key, hashed.
type revocation struct {
	RevokedAt int64 `json:"revoked_at"`
}

// RecordRevoked writes the revocation record of each of tenants.
func (s *Store) RecordRevoked(ctx context.Context, tenants []string) error {
	return s.recordRevoked(ctx, tenants, revocationKey)
}

// ClearRevoked deletes the revocation record of each of tenants (a key
// names it again); one there is none of is no error.
func (s *Store) ClearRevoked(ctx context.Context, tenants []string) error {
	return s.clearRevoked(ctx, tenants, revocationKey)
}

// Revoked reports whether tenant has a revocation record.
func (s *Store) Revoked(ctx context.Context, tenant string) (bool, error) {
	return s.revoked(ctx, revocationKey(tenant))
}

// RecordRevokedSpaces writes the revocation record of each of the token
// namespaces prefixes (a reload removed their issuers).
func (s *Store) RecordRevokedSpaces(ctx context.Context, prefixes []string) error {
	return s.recordRevoked(ctx, prefixes, spaceRevocationKey)
}

// ClearRevokedSpaces deletes the revocation record of each of the token
// namespaces prefixes (an issuer names it again).
func (s *Store) ClearRevokedSpaces(ctx context.Context, prefixes []string) error {
	return s.clearRevoked(ctx, prefixes, spaceRevocationKey)
}

// RevokedSpace reports whether the token namespace prefix has a
// revocation record.
func (s *Store) RevokedSpace(ctx context.Context, prefix string) (bool, error) {
	return s.revoked(ctx, spaceRevocationKey(prefix))
}

func (s *Store) recordRevoked(ctx context.Context, names []string, key func(string) string) error {
	b, err := json.Marshal(revocation{RevokedAt: s.now().Unix()})
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, err := s.batch.Put(ctx, key(n), b); err != nil {
			return fmt.Errorf("jobs: recording a revocation: %w", err)
		}
	}
	return nil
}

func (s *Store) clearRevoked(ctx context.Context, names []string, key func(string) string) error {
	for _, n := range names {
		if err := s.batch.Delete(ctx, key(n)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("jobs: clearing a revocation: %w", err)
		}
	}
	return nil
}

func (s *Store) revoked(ctx context.Context, key string) (bool, error) {
	_, err := s.batch.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("jobs: reading the revocation record: %w", err)
	}
	return true, nil
}
