package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrStoreFull refuses a new job, batch or file because the queue's store
// holds Options.MaxStoreBytes less the headroom kept for accepted jobs
// (or JetStream itself refused the write for lack of room). Space frees
// as files are deleted and as retention expires records, so the caller
// answers 507, not a retryable 429/503.
var ErrStoreFull = errors.New("job store is full")

// storeHeadroomDivisor sets the share of Options.MaxStoreBytes kept for
// work already accepted: new jobs, batches and files are refused once
// the store holds limit - limit/10, so the results, record updates and
// batch output files of accepted jobs (and uploads under way when the
// line was crossed) still fit under the hard limit the server enforces.
const storeHeadroomDivisor = 10

// StoreUsage is the queue store's size against its bound.
type StoreUsage struct {
	// Bytes is what the NATS account's JetStream file store holds: every
	// stream, bucket and object store of the queue.
	Bytes int64
	// Limit is Options.MaxStoreBytes, 0 when unbounded.
	Limit int64
	// AdmitLimit is where new work is refused: Limit less the headroom
	// for accepted jobs; 0 when unbounded.
	AdmitLimit int64
}

// StoreUsage reads the store's size: one JetStream round trip.
func (s *Store) StoreUsage(ctx context.Context) (StoreUsage, error) {
	info, err := s.js.AccountInfo(ctx)
	if err != nil {
		return StoreUsage{}, fmt.Errorf("jobs: reading store usage: %w", err)
	}
	return StoreUsage{Bytes: int64(info.Store), Limit: s.o.MaxStoreBytes, AdmitLimit: s.admitLimit()}, nil
}

func (s *Store) admitLimit() int64 {
	return s.o.MaxStoreBytes - s.o.MaxStoreBytes/storeHeadroomDivisor
}

// usageTTL is how long admission trusts a reading of the store's usage
// (plus what this process stored since): reading it is a JetStream round
// trip that cost as much as half a Submit (70µs of 115µs in process).
// Other replicas' writes within it are not seen; the headroom absorbs them.
const usageTTL = 250 * time.Millisecond

// usageCache is the last reading of the account's usage and the bytes this
// process stored since.
type usageCache struct {
	mu    sync.Mutex
	at    time.Time // of the reading; zero: read again
	bytes int64
	added atomic.Int64
}

// usedBytes is the store's usage for admission: a reading at most usageTTL
// old plus what this process stored since.
func (s *Store) usedBytes(ctx context.Context) (int64, error) {
	c := &s.usage
	c.mu.Lock()
	defer c.mu.Unlock()
	now := s.o.Now()
	if !c.at.IsZero() && now.Sub(c.at) < usageTTL {
		return c.bytes + c.added.Load(), nil
	}
	u, err := s.StoreUsage(ctx)
	if err != nil {
		return 0, err
	}
	c.at, c.bytes = now, u.Bytes
	c.added.Store(0)
	return u.Bytes, nil
}

// noteStored adds n bytes this process stored to the cached usage.
func (s *Store) noteStored(n int64) { s.usage.added.Add(n) }

// forgetUsage makes the next admission read the usage again: after a
// delete freed space, or JetStream refused a write the reading allowed.
func (s *Store) forgetUsage() {
	s.usage.mu.Lock()
	s.usage.at = time.Time{}
	s.usage.mu.Unlock()
}

// admitNew refuses new work (a job, a batch, a file) once the store is at
// its admission line, by the account's usage (every replica and process
// sharing the queue) read at most usageTTL ago; nothing when unbounded.
func (s *Store) admitNew(ctx context.Context) error { return s.admitNewExpecting(ctx, 0) }

// admitNewExpecting is admitNew for work expected to write expect more
// bytes (a batch's results): the line counts them, and the bytes
// reserved for the active batches' results (storereserve.go).
func (s *Store) admitNewExpecting(ctx context.Context, expect int64) error {
	if err := s.o.Embedded.StoreFault(); err != nil {
		// Refused at once: the write would wait out RequestTimeout for an
		// acknowledgement the failing store never sends.
		s.stats.storeRefusedFailing.Add(1)
		return fmt.Errorf("jobs: %w", err)
	}
	if s.o.MaxStoreBytes <= 0 {
		return nil
	}
	line := s.admitLimit()
	if expect >= line {
		// Never admitted, whatever frees: "the store is full, delete
		// files" sent the client deleting files to be refused again.
		s.stats.storeRefusedReserved.Add(1)
		return fmt.Errorf("jobs: this batch's results are expected to take %d bytes; new work is refused from %d (queue.max_store_bytes %d less the headroom for accepted jobs): %w",
			expect, line, s.o.MaxStoreBytes, ErrBatchTooLarge)
	}
	used, err := s.usedBytes(ctx)
	if err != nil {
		return err
	}
	if used >= line {
		s.stats.storeRefusedBudget.Add(1)
		return fmt.Errorf("jobs: the store holds %d bytes; new work is refused from %d (queue.max_store_bytes %d less the headroom for accepted jobs): %w",
			used, line, s.o.MaxStoreBytes, ErrStoreFull)
	}
	if reserved := s.reserved.sum(); used+reserved+expect >= line {
		s.stats.storeRefusedReserved.Add(1)
		return fmt.Errorf("jobs: the store holds %d bytes, %d are reserved for the results of accepted batches and this work would need %d more; new work is refused from %d (queue.max_store_bytes %d less the headroom for accepted jobs): %w",
			used, reserved, expect, line, s.o.MaxStoreBytes, ErrStoreFull)
	}
	return nil
}

// storeFull wraps err in ErrStoreFull when it is JetStream refusing a
// write for lack of room (the server's or the account's store limit),
// counting it, and in ErrStoreFailing when the embedded server's disk
// refused writes meanwhile (a write then ends in a timeout, or JetStream
// not enabled); other errors pass unchanged.
func (s *Store) storeFull(err error) error {
	if err == nil {
		return nil
	}
	if fault := s.o.Embedded.StoreFault(); fault != nil && !isStoreFullErr(err) {
		s.stats.storeRefusedFailing.Add(1)
		return fmt.Errorf("%w: %w", fault, err)
	}
	if !isStoreFullErr(err) {
		return err
	}
	s.stats.storeRefusedServer.Add(1)
	s.forgetUsage()
	return fmt.Errorf("%w: %w", ErrStoreFull, err)
}

// isStoreFullErr reports JetStream's answers to a write with no room:
// the server's store limit (insufficient resources), the account's, and
// a stream's MaxBytes with DiscardNew.
func isStoreFullErr(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case 10023, 10002, 10047: // insufficient resources; account resources exceeded; storage resources exceeded
		return true
	case 10077: // store failed: {err}
		return strings.Contains(apiErr.Description, "maximum bytes exceeded")
	}
	return false
}

// purgeFileChunks drops a file's content without the metadata write
// ObjectStore.Delete starts with, which JetStream refuses when the store
// is at its hard limit: deleting files must free space when it is needed
// most. The caller then deletes the (now small) object as usual.
func (s *Store) purgeFileChunks(ctx context.Context, id string) error {
	info, err := s.files.GetInfo(ctx, id)
	if err != nil {
		return fmt.Errorf("jobs: reading file %s: %w", id, err)
	}
	stream, err := s.js.Stream(ctx, filesStream)
	if err != nil {
		return fmt.Errorf("jobs: opening the files stream: %w", err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(fileChunksSubject(info.NUID))); err != nil {
		return fmt.Errorf("jobs: purging file %s: %w", id, err)
	}
	return nil
}

// dropRefused removes what a Submit JetStream refused for lack of room
// had stored: its body (the revision bodyRev) and, when msgSeq is not 0,
// its message. Nothing refers to them (the caller answers 507 and no
// record was written), and they would otherwise stay until retention, in
// a store already full. As purgeFileChunks, it purges rather than
// deletes (a KV delete writes a marker, which JetStream refuses at the
// hard bound; a purge writes nothing), and only up to bodyRev (what was
// stored under the key since is not this submit's). The message goes by
// its sequence (the work stream allows deletes; its subject is the
// class's, shared). Only for a key no other submit can share (no
// idempotency key): the caller decides.
func (s *Store) dropRefused(key string, bodyRev, msgSeq uint64) {
	ctx, cancel := s.cleanupContext()
	defer cancel()
	warn := func(what string, err error) {
		s.log.Warn("removing what a refused submit stored", "key", key, "what", what, "err", err)
	}
	if st, err := s.js.Stream(ctx, "KV_"+bodiesBucket); err != nil {
		warn("body", err)
	} else if err := st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bodiesBucket+"."+key), jetstream.WithPurgeSequence(bodyRev+1)); err != nil {
		warn("body", err)
	}
	if msgSeq != 0 {
		st, err := s.js.Stream(ctx, workStream)
		if err == nil {
			err = st.DeleteMsg(ctx, msgSeq)
		}
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			warn("message", err)
		}
	}
	s.forgetUsage()
}

// dropBatchBodies purges the bodies of a batch whose creation failed
// after some were stored: the batch is failed (or left validating, which
// the tracker fails), so no job of it runs and reads one, and a refused
// creation on a full store would otherwise keep them until retention. A
// purge writes nothing, so it works at the hard bound.
func (s *Store) dropBatchBodies(id string) {
	ctx, cancel := s.cleanupContext()
	defer cancel()
	st, err := s.js.Stream(ctx, "KV_"+bodiesBucket)
	if err == nil {
		err = st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bodiesBucket+"."+batchJobsFilter(id)))
	}
	if err != nil {
		s.log.Warn("removing the bodies of a batch whose creation failed", "batch", id, "err", err)
	}
	s.forgetUsage()
}

// dropRefusedBatch undoes a batch creation JetStream refused for lack of
// room (CreateBatch): the messages of msgSeqs, the job records and
// bodies, the batch's record (key) and its index entry. Nothing refers
// to them: the client is answered 507 without the batch's id. Marking
// the batch failed is refused at the hard bound, so it stayed validating
// until the tracker could fail it (CreateTimeout, once there was room),
// with whatever it had stored. Purges and message deletes write nothing,
// so this works at the hard bound; the id is new, so everything under it
// is this creation's. Trackers watching the batch find it gone at their
// next scan (nudged here).
func (s *Store) dropRefusedBatch(id, key string, msgSeqs []uint64) {
	call := func(what string, op func(ctx context.Context) error) bool {
		ctx, cancel := s.cleanupContext()
		defer cancel()
		if err := op(ctx); err != nil {
			s.log.Warn("removing what a refused batch creation stored", "batch", id, "what", what, "err", err)
			return false
		}
		return true
	}
	// The messages first: a worker taking one meanwhile finds its batch
	// validating and gives it back; one taken once its record is gone is
	// dropped as an orphan.
	if len(msgSeqs) > 0 {
		var work jetstream.Stream
		ok := call("messages", func(ctx context.Context) (err error) {
			work, err = s.js.Stream(ctx, workStream)
			return err
		})
		for _, seq := range msgSeqs {
			if !ok {
				break
			}
			ok = call("messages", func(ctx context.Context) error {
				if err := work.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
					return err
				}
				return nil
			})
		}
	}
	purge := func(what, bucket, subjectKey string) {
		call(what, func(ctx context.Context) error {
			st, err := s.js.Stream(ctx, "KV_"+bucket)
			if err != nil {
				return err
			}
			return st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bucket+"."+subjectKey))
		})
	}
	purge("job records", jobsBucket, batchJobsFilter(id))
	purge("bodies", bodiesBucket, batchJobsFilter(id))
	purge("index entry", batchBucket, activeKey(id))
	purge("record", batchBucket, key)
	s.forgetUsage()
	s.nudgeTracker()
}
