package jobs

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// An idempotency key's claim is an entry of the idem bucket whose value
// is the job id, as it always was, with the request's fingerprint in a
// message header (fingerprintHeader). The header, not the value, so that
// a binary from before reads a claim written now as it did its own (a
// rolling upgrade runs both on one bucket); it is written by the same
// compare-and-set publish as the claim (a KV put with its header), so a
// claim never exists without its fingerprint. A claim without the
// header (written before, or by an older binary) names no request and
// is treated as before: waited on, then taken over.

// fingerprintHeader carries a claim's requestFingerprint.
const fingerprintHeader = "Sluice-Request-Fingerprint"

// claimEntry is a key's claim as read: the job id, the fingerprint ("":
// none) and the revision.
type claimEntry struct {
	id, fp string
	rev    uint64
}

// claimSubject is the idem bucket's subject for key ik.
func claimSubject(ik string) string { return "$KV." + idemBucket + "." + ik }

// createClaim writes a claim of ik for id if ik has none, as KV Create
// does (over a delete marker too); jetstream.ErrKeyExists if it has one.
func (s *Store) createClaim(ctx context.Context, ik, id, fp string) (uint64, error) {
	rev, err := s.writeClaim(ctx, ik, id, fp, 0)
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return rev, err
	}
	if e, rerr := s.readClaim(ctx, ik); errors.Is(rerr, jetstream.ErrKeyDeleted) {
		return s.writeClaim(ctx, ik, id, fp, e.rev)
	}
	return 0, err
}

// writeClaim writes ik's claim for id with fingerprint fp if ik's latest
// revision is rev (0: none); jetstream.ErrKeyExists if it is not.
func (s *Store) writeClaim(ctx context.Context, ik, id, fp string, rev uint64) (uint64, error) {
	m := &nats.Msg{Subject: claimSubject(ik), Header: nats.Header{}, Data: []byte(id)}
	if fp != "" {
		m.Header.Set(fingerprintHeader, fp)
	}
	ack, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(rev))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return 0, errors.Join(err, jetstream.ErrKeyExists)
	}
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// readClaim reads ik's claim: jetstream.ErrKeyNotFound if it has none,
// jetstream.ErrKeyDeleted (with the marker's revision) if its latest
// entry is a delete or purge marker, as a KV Get.
func (s *Store) readClaim(ctx context.Context, ik string) (claimEntry, error) {
	st, err := s.idemStream.get(ctx, s.js, idemBucket)
	if err != nil {
		return claimEntry{}, err
	}
	m, err := st.GetLastMsgForSubject(ctx, claimSubject(ik))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return claimEntry{}, jetstream.ErrKeyNotFound
	}
	if err != nil {
		return claimEntry{}, err
	}
	return decodeClaim(m.Data, m.Header, m.Sequence)
}

// decodeClaim makes a claim entry of a stored message's data and header;
// a KV delete or purge marker is jetstream.ErrKeyDeleted.
func decodeClaim(data []byte, h nats.Header, seq uint64) (claimEntry, error) {
	e := claimEntry{id: string(data), fp: h.Get(fingerprintHeader), rev: seq}
	if h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != "" {
		return claimEntry{rev: seq}, jetstream.ErrKeyDeleted
	}
	return e, nil
}
