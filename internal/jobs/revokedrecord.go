package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// The revocation record: the tenants a gateway's reload left without an
// API key, kept in the job store so that it outlives the process and is
// read by every process sharing the store. A gateway's own reload
// refuses such a tenant's jobs from memory (gateway lostTenants); the
// record is what a gateway restarted with the key removed, or a replica
// whose config never listed the key, finds. Each is a key of the batch
// bucket, r.<tenant hash> (batch.go's listings read t.<hash>.* and a.*
// only), and expires with the bucket's TTL, queue.retention: by then
// every job and batch the tenant had queued has expired too.
func revocationKey(tenant string) string { return "r." + tenantHash(tenant) }

// revocation is a record's value: when the tenant was revoked, for an
// operator reading the bucket. The tenant is in the key, hashed.
type revocation struct {
	RevokedAt int64 `json:"revoked_at"`
}

// RecordRevoked writes the revocation record of each of tenants.
func (s *Store) RecordRevoked(ctx context.Context, tenants []string) error {
	b, err := json.Marshal(revocation{RevokedAt: s.now().Unix()})
	if err != nil {
		return err
	}
	for _, t := range tenants {
		if _, err := s.batch.Put(ctx, revocationKey(t), b); err != nil {
			return fmt.Errorf("jobs: recording a revoked tenant: %w", err)
		}
	}
	return nil
}

// ClearRevoked deletes the revocation record of each of tenants (a key
// names it again); one there is none of is no error.
func (s *Store) ClearRevoked(ctx context.Context, tenants []string) error {
	for _, t := range tenants {
		if err := s.batch.Delete(ctx, revocationKey(t)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("jobs: clearing a revoked tenant: %w", err)
		}
	}
	return nil
}

// Revoked reports whether tenant has a revocation record.
func (s *Store) Revoked(ctx context.Context, tenant string) (bool, error) {
	_, err := s.batch.Get(ctx, revocationKey(tenant))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("jobs: reading the revocation record: %w", err)
	}
	return true, nil
}
