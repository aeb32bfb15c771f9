package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// jobRecord is a job as stored in the jobs bucket. The public Job hides
// Tenant, Body, Webhook and CancelRequested from its JSON, so the record
// wraps it and carries them itself (the body lives in the bodies bucket:
// every transition rewrites the record, and batch trackers watch every
// record of their batch, neither of which should copy the prompt).
type jobRecord struct {
	Job             Job    `json:"job"`
	Tenant          string `json:"tenant"`
	Webhook         string `json:"webhook,omitempty"`
	CancelRequested bool   `json:"cancel_requested,omitempty"`
	// Index is the request's position in its batch's input file.
	Index int `json:"index,omitempty"`
	// Seq and Delivery identify the message delivery that set the job
	// running: a different message for a running job is a duplicate,
	// the same message redelivered means its worker died (takeover).
	// A requeued job keeps Seq: the message holding its retry delay
	// (heldByOther).
	Seq      uint64 `json:"seq,omitempty"`
	Delivery uint64 `json:"delivery,omitempty"`
	// LastError is the latest failed attempt's error, kept for the
	// dead-letter record.
	LastError string `json:"last_error,omitempty"`
	// HookOwner is the process (Store.owner) that sends the webhook: the
	// one whose write made the job terminal, or the one that claimed a
	// resend (webhookresend.go).
	HookOwner string `json:"webhook_owner,omitempty"`
	// Event makes the record a batch event's delivery to Webhook
	// (batchevent.go), not a job: its webhook is delivered, retried and
	// resent as a job's is.
	Event *eventRecord `json:"event,omitempty"`
	// Fingerprint is requestFingerprint of a job submitted with an
	// idempotency key: a resubmission with the key must match it.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// job returns the public view with the hidden fields filled in.
func (r *jobRecord) job() *Job {
	j := r.Job
	j.Object = "job"
	j.Tenant = r.Tenant
	j.Webhook = r.Webhook
	j.CancelRequested = r.CancelRequested
	j.fingerprint = r.Fingerprint
	if r.Job.Result != nil {
		res := *r.Job.Result
		j.Result = &res
	}
	if r.Job.Error != nil {
		e := *r.Job.Error
		j.Error = &e
	}
	if r.Job.WebhookState != nil {
		w := *r.Job.WebhookState
		j.WebhookState = &w
	}
	return &j
}

// Key layout of the jobs (and bodies) bucket. Batch jobs share their
// batch's prefix, so a watch on b.<batch>.> lists one batch, and a
// zero-padded index sorts them in input order.
func singleKey(id string) string { return "j." + id }

func batchJobKey(batchID string, index int) string {
	return fmt.Sprintf("b.%s.%06d", batchID, index)
}

func batchJobsFilter(batchID string) string { return "b." + batchID + ".>" }

// tenantHash makes a tenant (any string) usable as a key token.
func tenantHash(tenant string) string {
	h := sha256.Sum256([]byte(tenant))
	return hex.EncodeToString(h[:12])
}

// Batch bucket layout: t.<tenant hash>.<id> is the batch (the tenant in
// the key isolates tenants and lists one tenant's batches); a.<id> ->
// tenant hash marks a batch the trackers still have work on.
func batchKey(tenant, id string) string { return "t." + tenantHash(tenant) + "." + id }
func activeKey(id string) string        { return "a." + id }

// idemKey is the idempotency bucket key of a tenant's Idempotency-Key.
func idemKey(tenant, key string) string {
	h := sha256.New()
	h.Write([]byte(tenant))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return hex.EncodeToString(h.Sum(nil))
}

// validToken is what may appear in ids and class names used as subject
// and key tokens.
var validToken = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

func decodeJob(e jetstream.KeyValueEntry) (*jobRecord, error) {
	return decodeJobValue(e.Key(), e.Value())
}

// decodeJobValue decodes a stored job record (stored input: written by
// any version of any replica, or damaged).
func decodeJobValue(key string, v []byte) (*jobRecord, error) {
	var r jobRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("jobs: decoding record %s: %w", key, err)
	}
	return &r, nil
}

// getJob reads a record; ErrNotFound if absent.
func (s *Store) getJob(ctx context.Context, key string) (*jobRecord, uint64, error) {
	return getRecord[jobRecord](ctx, s.jobs, key)
}

// getRecord reads the JSON record at key and its revision; ErrNotFound
// if absent.
func getRecord[T any](ctx context.Context, kv jetstream.KeyValue, key string) (*T, uint64, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("jobs: reading %s: %w", key, err)
	}
	var r T
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("jobs: decoding record %s: %w", key, err)
	}
	return &r, e.Revision(), nil
}

// errNoChange from a transition's function leaves the record as it is.
var errNoChange = errors.New("no change")

// transition applies f to the job record at key and writes the result
// with compare-and-swap, rereading and reapplying f whenever another
// writer got in first: every state change sees the latest record, so
// exactly one transition to a terminal state ever happens. f returns
// errNoChange to leave the record alone (transition then returns the
// record and changed=false), or another error to abort.
//
// The write that makes a job with a pending webhook terminal names this
// process as the webhook's sender (HookOwner): the process that notifies
// it, in the same write.
//
// A job submitted with a webhook by a binary from before webhook outcomes
// were recorded (2026-12-06) has no WebhookState; during a rolling
// upgrade a new worker may finish it. The write that makes it terminal
// marks it pending and indexes it, as a submit does now, so its webhook
// gets the retry schedule, the resend after a stop and a recorded
// outcome; without this, a receiver down for the first round lost it
// and its outcome was never shown. Records already terminal (finished
// by the old binary) are left alone: whether theirs was delivered is
// unknown, and resending a week of them would flood receivers.
func (s *Store) transition(ctx context.Context, key string, f func(r *jobRecord) error) (r *jobRecord, changed bool, err error) {
	adopted := false
	r, changed, err = casUpdate(ctx, s.jobs, key, func(r *jobRecord) error {
		wasTerminal := r.Job.Status.Terminal()
		adopted = false
		if err := f(r); err != nil {
			return err
		}
		if !wasTerminal && r.Job.Status.Terminal() && adoptsWebhook(r) {
			r.Job.WebhookState = &WebhookDelivery{Status: WebhookPending}
			adopted = true
		}
		if r.HookOwner == "" && r.Webhook != "" && r.Job.Status.Terminal() &&
			r.Job.WebhookState != nil && r.Job.WebhookState.Status == WebhookPending {
			r.HookOwner = s.owner
		}
		return nil
	})
	if err == nil && changed && adopted {
		s.indexWebhook(ctx, r.Job.ID) // after the record, as create's
	}
	return r, changed, err
}

// adoptsWebhook reports whether r is a webhook job written by an older
// binary (no WebhookState) that transition marks pending as it ends.
func adoptsWebhook(r *jobRecord) bool {
	return r.Webhook != "" && r.Job.BatchID == "" && r.Job.WebhookState == nil
}

// casUpdate is the compare-and-swap loop behind transition and
// updateBatch: read, apply f, write if the revision is still the one read,
// else start over.
func casUpdate[T any](ctx context.Context, kv jetstream.KeyValue, key string, f func(r *T) error) (*T, bool, error) {
	for {
		cur, rev, err := getRecord[T](ctx, kv, key)
		if err != nil {
			return nil, false, err
		}
		err = f(cur)
		if errors.Is(err, errNoChange) {
			return cur, false, nil
		}
		if err != nil {
			return cur, false, err
		}
		b, err := json.Marshal(cur)
		if err != nil {
			return nil, false, fmt.Errorf("jobs: encoding %s: %w", key, err)
		}
		_, err = kv.Update(ctx, key, b, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("jobs: writing %s: %w", key, err)
		}
		return cur, true, nil
	}
}

// asyncWrite is one compare-and-swap write of many sent together.
type asyncWrite struct {
	bucket string
	key    string
	value  []byte
	rev    uint64 // expected revision; 0 = the key must not exist
	noCAS  bool   // a plain put
}

// writeAll sends the writes without waiting for each acknowledgement (a
// synchronous KV call costs a round trip each: 10,000 of them take
// seconds) and then waits for all. It returns how many failed their
// compare-and-swap, and the first other error.
func (s *Store) writeAll(ctx context.Context, ws []asyncWrite) (conflicts int, err error) {
	msgs := make([]*nats.Msg, len(ws))
	for i, w := range ws {
		m := &nats.Msg{Subject: "$KV." + w.bucket + "." + w.key, Data: w.value, Header: nats.Header{}}
		if !w.noCAS {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.rev, 10))
		}
		msgs[i] = m
	}
	return s.publishAll(ctx, msgs, nil)
}

// publishChunk bounds the acknowledgements awaited at once (nats.go
// stalls async publishes beyond 4,000 pending).
const publishChunk = 1024

// publishAll publishes msgs asynchronously, a chunk at a time, and waits
// for their acknowledgements, counting compare-and-swap conflicts. When
// seqs is not nil, the stream sequence of each message stored is
// appended to it (also when an error ends the publishing: a chunk's
// acknowledgements are all awaited, so the caller can remove what was
// stored).
func (s *Store) publishAll(ctx context.Context, msgs []*nats.Msg, seqs *[]uint64) (conflicts int, err error) {
	futs := make([]jetstream.PubAckFuture, 0, min(len(msgs), publishChunk))
	for len(msgs) > 0 {
		chunk := msgs[:min(len(msgs), publishChunk)]
		msgs = msgs[len(chunk):]
		futs = futs[:0]
		for _, m := range chunk {
			f, err := s.js.PublishMsgAsync(m)
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				// The window stayed full for the stall wait: load, not a
				// fault (ErrBusy). The chunk's acknowledgements already
				// asked for are still awaited, for seqs.
				_, werr := waitAcks(ctx, futs, seqs)
				return conflicts, fmt.Errorf("jobs: publishing %s: %w: %w", m.Subject, ErrBusy, errors.Join(err, werr))
			}
			if err != nil {
				return conflicts, fmt.Errorf("jobs: publishing %s: %w", m.Subject, err)
			}
			futs = append(futs, f)
		}
		c, err := waitAcks(ctx, futs, seqs)
		conflicts += c
		if err != nil {
			return conflicts, err
		}
	}
	return conflicts, nil
}

// waitAcks waits for every future, counting compare-and-swap conflicts
// and appending the sequences stored to seqs when it is not nil.
func waitAcks(ctx context.Context, futs []jetstream.PubAckFuture, seqs *[]uint64) (conflicts int, err error) {
	for _, f := range futs {
		select {
		case ack := <-f.Ok():
			if seqs != nil {
				*seqs = append(*seqs, ack.Sequence)
			}
		case e := <-f.Err():
			var apiErr *jetstream.APIError
			if errors.As(e, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
				apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
				conflicts++
				continue
			}
			if err == nil {
				err = fmt.Errorf("jobs: publishing %s: %w", f.Msg().Subject, e)
			}
		case <-ctx.Done():
			return conflicts, ctx.Err()
		}
	}
	return conflicts, err
}

// listTimeout bounds one key listing: a listing that has not delivered
// every key by then is stuck (its callers retry or report the error).
const listTimeout = 30 * time.Second

// watchDrainBound bounds how long stopWatch reads a watcher whose
// subscription is still delivering after Stop (the connection draining).
const watchDrainBound = 5 * time.Second

// stopWatch stops w and frees nats.go's delivery goroutine, which blocks
// (holding the subscription) while w's buffered channel is full. It must
// not wait for Updates to close: nats.go closes it from a handler it
// installs only after subscribing, and the subscription ends by itself
// when the context given to Watch ends. When that happens in between (a
// Store closing while its tracker lists batches: a short window that CPU
// pressure stretches), the delivery goroutine exits with no handler and
// the channel is never closed; ranging over it hung Store.Close forever.
func stopWatch(w jetstream.KeyWatcher) {
	if err := w.Stop(); err != nil && !errors.Is(err, nats.ErrBadSubscription) {
		// Not stopped yet (the connection is draining or closing): it
		// delivers what it holds, then the library closes the channel.
		readUntilClosed(w, watchDrainBound)
	}
	// Stopped: the library delivers at most the message in hand (an entry
	// and the end-of-initial-values marker), so emptying the channel once
	// leaves it room for both.
	for {
		select {
		case _, ok := <-w.Updates():
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// readUntilClosed discards w's updates until the channel closes or bound
// passes.
func readUntilClosed(w jetstream.KeyWatcher, bound time.Duration) {
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-w.Updates():
			if !ok {
				return
			}
		case <-timer.C:
			return
		}
	}
}
