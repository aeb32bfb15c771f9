package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The endpoints the gateways run, recorded for every sender.
//
// A pending batch event keeps the endpoint it was recorded for
// (batchevent.go): any process sharing the queue may send it, and each
// process's own list may differ (a `sluice worker` is not reloaded with
// the gateway). Before this record, an endpoint a reload removed was
// still tried for its pending events, on the retry schedule, up to ~28 h
// after their batch ended: the fleet had no list to judge them by.
//
// So the gateways (Options.RecordBatchWebhooks) write their
// queue.batch_webhooks URLs to the jobs bucket at start and at each
// reload (batchHooksKey, compare-and-swap, a generation raised by each
// change), with the URLs the write took out of the list and when: those
// are the removed endpoints. A sender about to send a pending event drops
// it (failed, reason endpoint_removed; counted
// sluice_jobs_batch_events_total{outcome="withdrawn"}, one WARN line)
// when all of these hold:
//   - the record could be read (otherwise: sent, as before);
//   - its URL was removed, and is not listed again since;
//   - its batch ended before the removal (a gateway whose file still
//     lists the endpoint, during a rolling change, records new events
//     for it after: those are sent);
//   - the sender is not a gateway listing the URL itself.
//
// An endpoint only workers list (their --batch-webhooks) was never in the
// gateways' list, so never removed: its events are sent as before, as are
// those of every endpoint still listed (at least once). The last gateway
// to start or reload wins: one started with an older file takes out what
// the newer added (see docs/RELIABILITY.md, branch jobsfix).

// batchHooksKey holds the recorded list (recordedHooks). Not under j.,
// e. or w.: no job listing, event read or sweep reads it. The bucket's
// max age (queue.retention) expires it when no gateway wrote it for that
// long, so gateways write it again at half that (recordBatchWebhooks,
// refreshBatchWebhooks); removals older than removedKept are forgotten
// before.
const batchHooksKey = "batch-webhooks"

// removedKept bounds how long a removal is kept: past the retry
// schedule's end (27 h 36 after a batch's end) no event of the endpoint
// can be pending.
const removedKept = 48 * time.Hour

// recordedHooks is the list as the jobs bucket holds it.
type recordedHooks struct {
	Gen     int64            `json:"gen"`     // raised by each change
	URLs    []string         `json:"urls"`    // the gateways' endpoints' URLs now, sorted
	Removed map[string]int64 `json:"removed"` // URL -> when it was taken out (unix ms, its writer's clock)
	AtMS    int64            `json:"at_ms"`   // when it was last written
	By      string           `json:"by"`      // the last writer (its owner id)
}

// recordBatchWebhooks writes the endpoints in use now as the recorded
// list, the URLs it no longer has as removed now. before is this
// process's list before the change (nil at Open): what the record is
// taken to have held when it has expired.
//
// The key expires with the bucket's max age (queue.retention) after its
// last write, and a list that does not change is not written again: in a
// fleet whose list was last changed (or whose gateways last started with
// no record there) more than queue.retention ago there is no record, and
// a reload then recorded its list with nothing removed, so the events
// pending for the endpoint it took out were sent for ~28 h as before the
// record. So an expired record is taken to be the reloading process's own
// list before the change, and a record unchanged for half the retention
// is written again (same generation) when a gateway starts or reloads.
func (s *Store) recordBatchWebhooks(ctx context.Context, before []BatchEndpoint) error {
	ctx, cancel := s.requestContext(ctx)
	defer cancel()
	urls := endpointURLs(s.BatchWebhooks())
	for {
		var prev recordedHooks
		var rev uint64
		now := s.now().UnixMilli()
		e, err := s.jobs.Get(ctx, batchHooksKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			prev.URLs = endpointURLs(before)
		case err != nil:
			return fmt.Errorf("jobs: reading the recorded batch webhooks: %w", err)
		default:
			rev = e.Revision()
			if json.Unmarshal(e.Value(), &prev) == nil && slices.Equal(prev.URLs, urls) && now-prev.AtMS < s.o.Retention.Milliseconds()/2 {
				return nil
			}
		}
		gen := prev.Gen + 1
		if rev != 0 && slices.Equal(prev.URLs, urls) {
			gen = prev.Gen // written again before it expires, not a change
		}
		next := recordedHooks{Gen: gen, URLs: urls, Removed: map[string]int64{}, AtMS: now, By: s.owner}
		for u, at := range prev.Removed {
			if now-at < removedKept.Milliseconds() {
				next.Removed[u] = at
			}
		}
		for _, u := range prev.URLs {
			if _, still := slices.BinarySearch(urls, u); !still {
				next.Removed[u] = now
			}
		}
		for _, u := range urls {
			delete(next.Removed, u) // listed again
		}
		b, err := json.Marshal(next)
		if err != nil {
			return fmt.Errorf("jobs: encoding the batch webhooks: %w", err)
		}
		if rev == 0 {
			_, err = s.jobs.Create(ctx, batchHooksKey, b)
		} else {
			_, err = s.jobs.Update(ctx, batchHooksKey, b, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // another gateway wrote meanwhile: compared again
		}
		if err != nil {
			return fmt.Errorf("jobs: recording the batch webhooks: %w", s.storeFull(err))
		}
		if len(next.Removed) > len(prev.Removed) || prev.Gen == 0 {
			s.log.Info("batch webhooks: endpoint list recorded for the queue's senders", "generation", next.Gen,
				"endpoints", len(urls), "removed", len(next.Removed))
		}
		return nil
	}
}

// refreshBatchWebhooks writes the record again, same generation and
// list, when it is this process's list and half queue.retention old: the
// tracker's hourly sweep calls it, so that a fleet running one list for
// longer than the retention keeps its record and a gateway restarted
// with an endpoint removed still finds what it removes. A record of
// another list (a gateway whose file differs: the last start or reload
// wrote it) or none is left alone: rewriting it from here would undo that
// write, or record this list with nothing removed.
func (s *Store) refreshBatchWebhooks(ctx context.Context) error {
	if !s.o.RecordBatchWebhooks {
		return nil
	}
	ctx, cancel := s.requestContext(ctx)
	defer cancel()
	e, err := s.jobs.Get(ctx, batchHooksKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("jobs: reading the recorded batch webhooks: %w", err)
	}
	var l recordedHooks
	now := s.now().UnixMilli()
	if json.Unmarshal(e.Value(), &l) != nil || !slices.Equal(l.URLs, endpointURLs(s.BatchWebhooks())) ||
		now-l.AtMS < s.o.Retention.Milliseconds()/2 {
		return nil
	}
	for u, at := range l.Removed {
		if now-at >= removedKept.Milliseconds() {
			delete(l.Removed, u)
		}
	}
	l.AtMS, l.By = now, s.owner
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("jobs: encoding the batch webhooks: %w", err)
	}
	if _, err := s.jobs.Update(ctx, batchHooksKey, b, e.Revision()); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("jobs: refreshing the recorded batch webhooks: %w", s.storeFull(err))
	}
	return nil // a write meanwhile (mismatch) is newer: kept
}

// noteBatchWebhooks records the endpoints when this process is one that
// does (Options.RecordBatchWebhooks), logging a failure: the record
// then lacks this change, and the events of an endpoint it removed are
// still sent (as before the record).
func (s *Store) noteBatchWebhooks(ctx context.Context) { s.noteBatchWebhooksChange(ctx, nil) }

// noteBatchWebhooksChange is noteBatchWebhooks after a change of the
// list (SetBatchWebhooks), before being the list this process had until
// now.
func (s *Store) noteBatchWebhooksChange(ctx context.Context, before []BatchEndpoint) {
	if !s.o.RecordBatchWebhooks {
		return
	}
	if err := s.recordBatchWebhooks(ctx, before); err != nil {
		s.log.Warn("batch webhooks: recording the endpoint list for the queue's senders failed; "+
			"events pending for endpoints it removed are still sent", "err", err)
	}
}

// withdrawnEndpoint reports whether the pending batch event j (its
// record's Webhook, its batch's end as FinishedAt) is for an endpoint the
// gateways removed after its batch ended (see above), with the recorded
// list's generation. A list that cannot be read withdraws nothing.
func (s *Store) withdrawnEndpoint(ctx context.Context, j *Job) (gen int64, withdrawn bool) {
	if s.o.RecordBatchWebhooks && slices.ContainsFunc(s.BatchWebhooks(), func(e BatchEndpoint) bool { return e.URL == j.Webhook }) {
		return 0, false
	}
	ctx, cancel := s.requestContext(ctx)
	defer cancel()
	e, err := s.jobs.Get(ctx, batchHooksKey)
	if err != nil {
		return 0, false
	}
	var l recordedHooks
	if json.Unmarshal(e.Value(), &l) != nil {
		return 0, false
	}
	at, removed := l.Removed[j.Webhook]
	// FinishedAt is in seconds: one ending within the removal's second
	// counts as after it.
	if !removed || (j.FinishedAt+1)*1000 > at {
		return 0, false
	}
	return l.Gen, true
}

// endpointURLs is the sorted set of endpoints' URLs, as the record holds them.
func endpointURLs(endpoints []BatchEndpoint) []string {
	urls := make([]string, 0, len(endpoints))
	for _, e := range endpoints {
		urls = append(urls, e.URL)
	}
	slices.Sort(urls)
	return slices.Compact(urls)
}
