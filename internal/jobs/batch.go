package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Batch statuses (OpenAI's names).
const (
	batchValidating = "validating"
	batchInProgress = "in_progress"
	batchFinalizing = "finalizing"
	batchCompleted  = "completed"
	batchFailed     = "failed"
	batchExpired    = "expired"
	batchCancelling = "cancelling"
	batchCancelled  = "cancelled"
)

func batchTerminal(status string) bool {
	switch status {
	case batchCompleted, batchFailed, batchExpired, batchCancelled:
		return true
	}
	return false
}

// maxBatchRequests is what the six-digit index in job keys holds (OpenAI
// allows 50,000).
const maxBatchRequests = 999_999

// batchRecord is a batch as stored: Batch hides Tenant from its JSON.
type batchRecord struct {
	Batch  Batch  `json:"batch"`
	Tenant string `json:"tenant"`
	// Target is the terminal status a started finalization leads to, so
	// a tracker that takes over a half-done finalization finishes the
	// same one.
	Target string `json:"target,omitempty"`
	// FilesAt is when finalization began (Unix seconds): the result
	// files' created_at, the same whichever process writes them.
	FilesAt int64 `json:"files_at,omitempty"`
	// Writer is the claim on the result files while they are being
	// written (fileclaim.go).
	Writer *fileClaim `json:"writer,omitempty"`
	// OutputExpiresAfter is the result files' lifetime in seconds
	// (output_expires_after), 0 for the store's retention. Not in the
	// batch object: OpenAI's has no such field.
	OutputExpiresAfter int64 `json:"output_expires_after,omitempty"`
	// InputBytes is the sum of the requests' bodies, the base of the
	// estimate of the bytes the batch's results will take
	// (storereserve.go); 0 in a record written before it.
	InputBytes int64 `json:"input_bytes,omitempty"`
}

func (r *batchRecord) batch() *Batch {
	b := r.Batch
	b.Object = "batch"
	b.Tenant = r.Tenant
	return &b
}

func (s *Store) getBatch(ctx context.Context, key string) (*batchRecord, uint64, error) {
	return getRecord[batchRecord](ctx, s.batch, key)
}

// updateBatch is transition for batch records.
func (s *Store) updateBatch(ctx context.Context, key string, f func(r *batchRecord) error) (*batchRecord, bool, error) {
	return casUpdate(ctx, s.batch, key, f)
}

// CreateBatch records the batch and enqueues one job per request.
//
// Order matters for crashes: the batch is written "validating", then
// bodies and job records, then the messages, and only then does it become
// in_progress. Workers hold back jobs of a validating batch, and the
// tracker fails a batch left validating by a creator that died, so a
// half-enqueued batch never runs as if it were whole.
func (s *Store) CreateBatch(ctx context.Context, sp BatchSpec) (_ *Batch, err error) {
	ctx, done, err := s.onConn(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { err = done(err) }()
	window, err := checkBatchSpec(sp)
	if err != nil {
		return nil, err
	}
	expect := newBatchExpectedBytes(sp)
	if err := s.admitNewExpecting(ctx, expect); err != nil {
		return nil, err
	}
	rec, err := s.newBatchRecord(sp, window)
	if err != nil {
		return nil, err
	}
	id := rec.Batch.ID
	defer func() {
		if err != nil {
			s.reserved.drop(id) // writeBatch reserved its results' bytes
		}
	}()
	key := batchKey(sp.Tenant, id)
	if err := s.writeBatch(ctx, rec, key); err != nil {
		return nil, err
	}
	msgSeqs := make([]uint64, 0, len(sp.Requests)) // the messages stored, to remove if the creation is refused
	if err := s.enqueueBatch(ctx, rec, sp.Requests, &msgSeqs); err != nil {
		return nil, s.undoEnqueue(id, key, msgSeqs, err)
	}
	return s.startBatch(ctx, id, key, msgSeqs)
}

// checkBatchSpec checks the batch's size and returns its completion
// window.
func checkBatchSpec(sp BatchSpec) (window time.Duration, err error) {
	n := len(sp.Requests)
	if n == 0 || n > maxBatchRequests {
		return 0, fmt.Errorf("jobs: a batch needs 1 to %d requests, not %d", maxBatchRequests, n)
	}
	window, err = time.ParseDuration(sp.CompletionWindow)
	if err != nil || window <= 0 {
		return 0, fmt.Errorf("jobs: invalid completion window %q", sp.CompletionWindow)
	}
	return window, nil
}

// newBatchRecord is the new batch's record, validating, under a new id.
func (s *Store) newBatchRecord(sp BatchSpec, window time.Duration) (*batchRecord, error) {
	now := s.now()
	suffix, err := s.newID("", 8)
	if err != nil {
		return nil, err
	}
	// The id starts with the creation time so that ids sort newest last:
	// ListBatches pages through keys without reading every batch.
	id := fmt.Sprintf("batch_%012x%s", now.UnixMilli(), suffix)
	var in int64
	for _, r := range sp.Requests {
		in += int64(len(r.Body))
	}
	return &batchRecord{Tenant: sp.Tenant, OutputExpiresAfter: int64(sp.OutputExpiresAfter / time.Second), InputBytes: in, Batch: Batch{
		ID: id, Object: "batch", Endpoint: sp.Endpoint, InputFileID: sp.InputFileID,
		CompletionWindow: sp.CompletionWindow, Status: batchValidating, CreatedAt: now.Unix(),
		ExpiresAt: ptr(now.Add(window).Unix()), RequestCounts: BatchCounts{Total: len(sp.Requests)}, Metadata: sp.Metadata,
		Model: batchModel(sp.Requests),
	}}, nil
}

// writeBatch stores the new batch's record at key, within the active
// batches' bounds, and indexes it as active.
func (s *Store) writeBatch(ctx context.Context, rec *batchRecord, key string) error {
	id := rec.Batch.ID
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("jobs: encoding batch: %w", err)
	}
	if s.tracker != nil { // the tracker keeps the counts; without one, another process creates batches
		if err := s.active.reserve(id, tenantHash(rec.Tenant), s.o.MaxActiveBatches, s.o.MaxActiveBatchesPerTenant); err != nil {
			return err
		}
		if s.o.MaxStoreBytes > 0 {
			// Reserved from here on, so creations racing this one count
			// it (and, pending in s.active, a scan keeps it); its actor
			// keeps the reservation once it tracks the batch, and drops it
			// when the batch is finalized (storereserve.go).
			n := rec.Batch.RequestCounts.Total
			s.reserved.set(id, batchExpectedBytes(n, inputPerLine(rec.InputBytes, n), 0))
		}
	}
	if _, err := s.batch.Create(ctx, key, b); err != nil {
		s.active.release(id)
		return fmt.Errorf("jobs: writing batch: %w", s.storeFull(err))
	}
	// Refused for lack of room at any step below, the creation is undone
	// (dropRefusedBatch): marking the batch failed is refused too, and
	// it stayed validating, with what it stored, until the tracker could
	// fail it (CreateTimeout, once there is room). The client is answered
	// 507 without the batch's id, so nothing refers to what goes.
	if _, err := s.batch.Put(ctx, activeKey(id), []byte(key)); err != nil {
		s.active.release(id)
		if isStoreFullErr(err) {
			s.dropRefusedBatch(id, key, nil)
			return fmt.Errorf("jobs: indexing batch: %w", s.storeFull(err))
		}
		return s.failCreate(key, fmt.Errorf("jobs: indexing batch: %w", err))
	}
	s.active.indexed(id)
	return nil
}

// undoEnqueue undoes a creation whose jobs could not all be enqueued (err):
// dropped when refused for lack of room, else marked failed; it returns
// the error to answer.
func (s *Store) undoEnqueue(id, key string, msgSeqs []uint64, err error) error {
	if isStoreFullErr(err) {
		s.dropRefusedBatch(id, key, msgSeqs)
		s.active.release(id)
		return s.storeFull(err)
	}
	if errors.Is(err, ErrBusy) {
		// Refused for load (503 without the batch's id, to be retried):
		// undone like a refusal for room, not left behind failed.
		s.dropRefusedBatch(id, key, msgSeqs)
		s.active.release(id)
		return err
	}
	err = s.failCreate(key, err)
	s.dropBatchBodies(id) // the batch never runs now: no job reads them
	return err
}

// startBatch moves the batch, whole, from validating to in_progress,
// unless it was cancelled meanwhile.
func (s *Store) startBatch(ctx context.Context, id, key string, msgSeqs []uint64) (*Batch, error) {
	rec, _, err := s.updateBatch(ctx, key, func(r *batchRecord) error {
		if r.Batch.Status != batchValidating {
			return errNoChange // cancelled meanwhile
		}
		r.Batch.Status = batchInProgress
		r.Batch.InProgressAt = ptr(s.now().Unix())
		return nil
	})
	if err != nil && isStoreFullErr(err) {
		s.dropRefusedBatch(id, key, msgSeqs)
		s.active.release(id)
		return nil, fmt.Errorf("jobs: starting batch: %w", s.storeFull(err))
	}
	if err != nil {
		return nil, err
	}
	s.nudgeTracker()
	return rec.batch(), nil
}

// batchModel is the model every request names, or "" when they name
// several.
func batchModel(reqs []BatchRequest) string {
	for _, r := range reqs[1:] {
		if r.Model != reqs[0].Model {
			return ""
		}
	}
	return reqs[0].Model
}

// enqueueBatch writes the bodies and job records, then the messages,
// appending the sequences of those stored to msgSeqs.
func (s *Store) enqueueBatch(ctx context.Context, rec *batchRecord, reqs []BatchRequest, msgSeqs *[]uint64) error {
	created := rec.Batch.CreatedAt
	ws := make([]asyncWrite, 0, 2*len(reqs))
	for i, r := range reqs {
		jid, err := s.newID("job_", 16)
		if err != nil {
			return err
		}
		key := batchJobKey(rec.Batch.ID, i)
		jr, err := json.Marshal(&jobRecord{Tenant: rec.Tenant, Index: i, Job: Job{
			ID: jid, Object: "job", Status: StatusQueued, Path: rec.Batch.Endpoint, Model: r.Model,
			Class: "batch", BatchID: rec.Batch.ID, CustomID: r.CustomID, CreatedAt: created,
		}})
		if err != nil {
			return fmt.Errorf("jobs: encoding job: %w", err)
		}
		ws = append(ws,
			asyncWrite{bucket: bodiesBucket, key: key, value: r.Body, noCAS: true},
			asyncWrite{bucket: jobsBucket, key: key, value: jr})
	}
	conflicts, err := s.writeAll(ctx, ws)
	if err == nil && conflicts > 0 {
		err = fmt.Errorf("jobs: %d job records of batch %s existed already", conflicts, rec.Batch.ID)
	}
	if err != nil {
		return err
	}
	msgs := make([]*nats.Msg, len(reqs))
	for i := range reqs {
		key := batchJobKey(rec.Batch.ID, i)
		msgs[i] = &nats.Msg{Subject: workSubjects + "batch", Data: []byte(key),
			Header: nats.Header{jetstream.MsgIDHeader: []string{key}}}
	}
	if _, err := s.publishAll(ctx, msgs, msgSeqs); err != nil {
		return fmt.Errorf("jobs: enqueueing batch %s: %w", rec.Batch.ID, err)
	}
	var stored int64
	for _, w := range ws {
		stored += int64(len(w.value))
	}
	s.noteStored(stored)
	return nil
}

// failCreate marks a batch whose creation went wrong failed (best effort:
// the tracker fails it later if this write fails too) and returns err.
func (s *Store) failCreate(key string, err error) error {
	ctx, cancel := s.cleanupContext()
	defer cancel()
	done, changed, uerr := s.updateBatch(ctx, key, func(r *batchRecord) error {
		failBatch(r, s.now().Unix(), "enqueueing the batch failed")
		return nil
	})
	if uerr != nil {
		s.log.Warn("marking batch failed", "batch", key, "err", uerr)
	}
	if changed {
		// The tracker writes them if this fails: the batch is still in
		// the active index.
		if err := s.batchEnded(ctx, done); err != nil {
			s.log.Warn("recording a failed batch's webhook events (its tracker retries)", "batch", key, "err", err)
		}
	}
	return err
}

func failBatch(r *batchRecord, now int64, msg string) {
	r.Batch.Status = batchFailed
	r.Batch.FailedAt = ptr(now)
	r.Batch.Errors = &BatchErrors{Object: "list", Data: []BatchLineError{{Code: "internal_error", Message: msg}}}
}

// Batch returns the tenant's batch.
func (s *Store) Batch(ctx context.Context, tenant, id string) (_ *Batch, err error) {
	ctx, done, err := s.onConn(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { err = done(err) }()
	if !validToken.MatchString(id) {
		return nil, ErrNotFound
	}
	r, _, err := s.getBatch(ctx, batchKey(tenant, id))
	if err != nil {
		return nil, err
	}
	if r.Tenant != tenant {
		return nil, ErrNotFound
	}
	return r.batch(), nil
}

// ListBatches returns the tenant's batches newest first.
func (s *Store) ListBatches(ctx context.Context, tenant, after string, limit int) (_ []*Batch, _ bool, err error) {
	ctx, done, err := s.onConn(ctx)
	if err != nil {
		return nil, false, err
	}
	defer func() { err = done(err) }()
	if limit <= 0 {
		limit = 20
	}
	prefix := "t." + tenantHash(tenant) + "."
	keys, err := s.listKeys(ctx, batchBucket, prefix+"*")
	if err != nil {
		return nil, false, fmt.Errorf("jobs: listing batches: %w", err)
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = strings.TrimPrefix(k, prefix)
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	if after != "" {
		// Ids sort by creation time, so "after" is every smaller id, even
		// if that batch itself is gone.
		i := 0
		for i < len(ids) && ids[i] >= after {
			i++
		}
		ids = ids[i:]
	}
	more := len(ids) > limit
	ids = ids[:min(limit, len(ids))]
	out := make([]*Batch, 0, len(ids))
	for _, id := range ids {
		r, _, err := s.getBatch(ctx, prefix+id)
		if errors.Is(err, ErrNotFound) {
			continue // expired between listing and reading
		}
		if err != nil {
			return nil, false, err
		}
		if r.Tenant == tenant {
			out = append(out, r.batch())
		}
	}
	return out, more, nil
}

// CancelBatch moves the batch to cancelling; the tracker cancels its
// queued jobs, lets running ones finish, and then makes it cancelled.
func (s *Store) CancelBatch(ctx context.Context, tenant, id string) (_ *Batch, err error) {
	ctx, done, err := s.onConn(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { err = done(err) }()
	if !validToken.MatchString(id) {
		return nil, ErrNotFound
	}
	r, _, err := s.updateBatch(ctx, batchKey(tenant, id), func(r *batchRecord) error {
		switch {
		case r.Tenant != tenant:
			return ErrNotFound
		case r.Batch.Status == batchCancelling:
			return errNoChange
		case r.Batch.Status != batchValidating && r.Batch.Status != batchInProgress, r.Target != "":
			return ErrConflict // finished, or being finalized (expiring)
		}
		r.Batch.Status = batchCancelling
		r.Batch.CancellingAt = ptr(s.now().Unix())
		return nil
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, ErrNotFound
	case errors.Is(err, ErrConflict):
		return r.batch(), fmt.Errorf("jobs: batch %s is %s: %w", id, r.Batch.Status, ErrConflict)
	case err != nil:
		return nil, err
	}
	s.nudgeTracker()
	return r.batch(), nil
}

func ptr[T any](v T) *T { return &v }
