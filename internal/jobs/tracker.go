package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The tracker keeps batches moving: request counts, cancellation, expiry
// and finalization. Counts are never incremented; they are recomputed
// from the job records (the source of truth), so a crash anywhere loses
// nothing, and any process's tracker can take over any batch.
//
// One goroutine (run) lists the active batches (a.<id> keys) whenever
// they change (it watches them), every TrackInterval while some are
// active here, and keeps one actor per batch. An actor watches its
// batch's job records (a KV watch on b.<id>.>: every current record, then
// every change, wherever the job ran) and evaluates the batch when nudged
// or when its last job finishes. Several processes may track the same
// batch: every batch change is a compare-and-swap, and finalization is
// idempotent (see finalize).
type tracker struct {
	s      *Store
	nudge  chan struct{}
	actors map[string]*actor // by batch id; run's goroutine only
	swept  time.Time         // the last sweep of orphaned chunks (chunksweep.go); run's goroutine only
}

func newTracker(s *Store) *tracker {
	return &tracker{s: s, nudge: make(chan struct{}, 1), actors: map[string]*actor{}}
}

// nudgeTracker asks the tracker to look at the batches now.
func (s *Store) nudgeTracker() {
	if s.tracker == nil {
		return
	}
	select {
	case s.tracker.nudge <- struct{}{}:
	default:
	}
}

// idleRescans is how many TrackIntervals an idle tracker (no batch
// active here) waits between scans while it watches the active-batch
// index: a batch started anywhere shows there at once, so the scan is
// only a safety net for a watch that missed something. Listing the index
// every TrackInterval cost an idle gateway a consumer created and deleted
// on the NATS server every second (issue 12).
const idleRescans = 60

// watchesOnConn: a key watch is an ordered consumer, in the NATS
// server's memory. When the connection drops because its server stopped
// (the embedded store's disk-fault recovery starts a new server, or a
// NATS server restarts), the consumer is gone with it, and nats.go's
// watch, reconnected, delivers nothing until its own check of an idle
// ordered consumer resets it, two 5 s heartbeat periods later at best
// (a batch's job record written just after a recovery restart reached
// its actor 19.9 s later; the index watch of a scratch run saw nothing
// in 40 s). So each watch lives as long as the connection it was made on
// (connEpoch) and is made again on the next, and the tracker's scan is
// bound to the connection too (a listing in flight at the drop waited
// out listTimeout, 30 s, the tracker with it).

func (t *tracker) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var index jetstream.KeyWatcher // a.* updates; nil while not watched
	var indexConn <-chan struct{}  // ends with the connection index was made on
	defer func() {
		if index != nil {
			stopWatch(index)
		}
	}()
	for {
		if index == nil {
			index, indexConn = t.watchIndex(ctx)
		}
		t.scan(ctx, &wg)
		t.sweep(ctx, &wg)
		every := t.s.o.TrackInterval
		var changes <-chan jetstream.KeyValueEntry
		if index != nil {
			changes = index.Updates()
			if len(t.actors) == 0 {
				every *= idleRescans
			}
		}
		timer := time.NewTimer(every)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-t.nudge:
		case _, ok := <-changes:
			if !ok {
				stopWatch(index)
				index = nil // watched again before the next scan
			}
			drainUpdates(changes) // one scan for a burst of changes
		case <-indexConn:
			// The connection dropped: the watch's consumer may be gone
			// with its server (watchesOnConn). Watched again, on the
			// next connection, before the next scan.
			stopWatch(index)
			index, indexConn = nil, nil
		}
		timer.Stop()
	}
}

// sweep purges orphaned file chunks, deletes expired files and keeps the
// batch-webhooks record from expiring when orphanSweepEvery has passed
// since the last sweep began, and as the tracker starts; on a goroutine
// of its own (wg), so a slow sweep delays no batch. A failed sweep is
// tried again at the next period: orphans cost space, not correctness.
func (t *tracker) sweep(ctx context.Context, wg *sync.WaitGroup) {
	now := t.s.now()
	if !t.swept.IsZero() && now.Sub(t.swept) < orphanSweepEvery {
		return
	}
	t.swept = now
	wg.Go(func() {
		if _, err := t.s.sweepOrphanChunks(ctx); err != nil && ctx.Err() == nil {
			t.s.log.Warn("sweeping the chunks of file writes that never committed", "err", err)
		}
		if _, err := t.s.sweepExpiredFiles(ctx); err != nil && ctx.Err() == nil {
			t.s.log.Warn("deleting expired files", "err", err)
		}
		if err := t.s.refreshBatchWebhooks(ctx); err != nil && ctx.Err() == nil {
			t.s.log.Warn("batch webhooks: refreshing the recorded endpoint list", "err", err)
		}
	})
}

// watchIndex watches the active-batch index, with the Done of the
// connection it watches on (watchesOnConn); nil when it cannot (NATS
// away: the tracker then scans every TrackInterval and tries again).
func (t *tracker) watchIndex(ctx context.Context) (jetstream.KeyWatcher, <-chan struct{}) {
	conn := t.s.conn.current()
	if conn.Err() != nil {
		return nil, nil // back, the reconnect not yet taken in: the next scan
	}
	w, err := t.s.batch.Watch(ctx, "a.*", jetstream.MetaOnly())
	if err != nil {
		if ctx.Err() == nil {
			t.s.log.Debug("watching active batches", "err", err)
		}
		return nil, nil
	}
	return w, conn.Done()
}

// drainUpdates discards the updates already delivered on ch.
func drainUpdates(ch <-chan jetstream.KeyValueEntry) {
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// scan starts actors for new active batches and nudges the others.
func (t *tracker) scan(ctx context.Context, wg *sync.WaitGroup) {
	for id, a := range t.actors {
		select {
		case <-a.done:
			delete(t.actors, id)
		default:
		}
	}
	// Its reads bound to the connection (onConn): one in flight when the
	// connection drops waited out listTimeout (30 s) before, the tracker
	// with it, its watches not made again until then (watchesOnConn).
	rctx, release, err := t.s.onConn(ctx)
	if err != nil {
		return // NATS away: the next scan
	}
	defer release(nil)
	scan := t.s.active.beginScan()
	ids, err := t.s.activeIndex(rctx)
	if err != nil {
		if rctx.Err() == nil {
			t.s.log.Warn("listing active batches", "err", err)
		}
		return
	}
	batchKeys := make([]string, 0, len(ids))
	listed := make(map[string]bool, len(ids))
	for _, id := range ids {
		k := activeKey(id)
		if a, ok := t.actors[id]; ok {
			listed[id] = true
			select {
			case a.nudge <- struct{}{}:
			default:
			}
			batchKeys = append(batchKeys, a.key)
			continue
		}
		e, err := t.s.batch.Get(rctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			// A marker: the batch finished (or its creation was undone).
			if err := t.s.purgeIndexMarker(rctx, id); err != nil && rctx.Err() == nil {
				t.s.log.Debug("purging a batch's index marker", "batch", id, "err", err)
			}
			continue
		}
		if err != nil {
			continue // the next scan reads it again
		}
		listed[id] = true
		a := &actor{s: t.s, id: id, key: string(e.Value()), nudge: make(chan struct{}, 1),
			done: make(chan struct{}), jobs: map[int]*jobState{}}
		t.actors[id] = a
		batchKeys = append(batchKeys, a.key)
		wg.Go(func() { a.run(ctx) })
	}
	// An actor whose batch left the index without it is told to look:
	// a refused creation undone (dropRefusedBatch) takes the batch away
	// with no update its watch sees.
	for id, a := range t.actors {
		if !listed[id] {
			select {
			case a.nudge <- struct{}{}:
			default:
			}
		}
	}
	// Seen before the prune: a creation this listing has is listed; one
	// it has not is still pending.
	t.s.active.seen(scan, batchKeys)
	t.s.reserved.prune(func(id string) bool { return listed[id] || t.s.active.isPending(id) })
}

// lineKind is where a finished job goes in the batch's result files.
type lineKind uint8

const (
	lineNone   lineKind = iota // in neither file (a job cancelled by itself, not with its batch)
	lineOutput                 // a 2xx answer: output file, counted completed
	lineError                  // any other outcome: error file, counted failed
)

// kindOf places a finished job. A request its batch's expiry or
// cancellation kept from running has an error line (batch_expired,
// batch_cancelled: the codes OpenAI documents for such lines), so the
// two files together account for every line of the input.
func kindOf(r *jobRecord) lineKind {
	switch {
	case r.Job.Status == StatusSucceeded:
		return lineOutput
	case r.Job.Status == StatusFailed:
		return lineError
	case r.Job.Status == StatusCancelled && r.Job.Error != nil &&
		(r.Job.Error.Code == "batch_expired" || r.Job.Error.Code == "batch_cancelled"):
		return lineError
	}
	return lineNone
}

// jobState is what an actor knows of one job.
type jobState struct {
	rev    uint64
	status Status
	kind   lineKind
	usage  BatchUsage // of a terminal job's answer, summed into the batch's
	rec    *jobRecord // while not terminal, to cancel it
}

type actor struct {
	s     *Store
	id    string // batch id
	key   string // batch record key
	nudge chan struct{}
	done  chan struct{}

	jobs     map[int]*jobState // by index
	ready    bool              // the watch delivered every existing record
	terminal int
	total    int // from the batch record

	// For the reservation of its results' bytes (storereserve.go).
	inputBytes int64 // from the batch record
	doneBytes  int64 // the stored records of its lines finished with a file line
	doneLines  int

	// countsFailing is set while writing the batch's counts fails, to
	// say so once when it starts and once when it ends, not every
	// evaluation (each TrackInterval).
	countsFailing      bool
	countsFailingSince time.Time
	countsFailures     int
}

func (a *actor) run(ctx context.Context) {
	finished := false
	a.s.lines.actors.Add(1)
	defer func() {
		a.s.lines.actors.Add(-1)
		a.s.lines.dropped(a.jobs)
		close(a.done)
		if finished {
			a.s.reserved.drop(a.id)
			// Its tracker's next scan drops it and recounts the active
			// batches now: forget's index entry is purged, and a purge
			// sends the tracker's watch no event.
			a.s.nudgeTracker()
		}
	}()
	conn := a.s.conn.current()
	if conn.Err() != nil {
		return // NATS away or its reconnect not yet taken in: the next scan retries
	}
	w, err := a.s.jobs.Watch(ctx, batchJobsFilter(a.id))
	if err != nil {
		if ctx.Err() == nil {
			a.s.log.Warn("watching batch", "batch", a.id, "err", err)
		}
		return // the next scan retries
	}
	defer stopWatch(w)
	if a.s.o.batchWatched != nil {
		a.s.o.batchWatched(a.id)
	}
	for {
		select {
		case <-conn.Done():
			// The connection dropped (watchesOnConn): the next scan
			// starts an actor on the next one, which reads every job
			// record again.
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				a.ready = true
			} else if !a.apply(e) {
				continue
			}
			if a.ready && (e == nil || a.allTerminal()) && a.evaluate(ctx) {
				finished = true
				return
			}
		case <-a.nudge:
			if a.evaluate(ctx) {
				finished = true
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// apply records a job record update; it reports whether a job became
// terminal.
func (a *actor) apply(e jetstream.KeyValueEntry) bool {
	if e.Operation() != jetstream.KeyValuePut {
		return false
	}
	idx, err := strconv.Atoi(e.Key()[strings.LastIndexByte(e.Key(), '.')+1:])
	if err != nil {
		return false
	}
	st := a.jobs[idx]
	if st != nil && (st.rev >= e.Revision() || st.status.Terminal()) {
		return false
	}
	r, err := decodeJob(e)
	if err != nil {
		a.s.log.Warn("tracking batch", "err", err)
		return false
	}
	prev := st
	st = &jobState{rev: e.Revision(), status: r.Job.Status, rec: r}
	a.jobs[idx] = st
	if st.status.Terminal() {
		st.kind, st.rec = kindOf(r), nil
		if st.kind != lineNone {
			st.usage = resultUsage(r.Job.Result)
			a.doneBytes += int64(len(e.Value()))
			a.doneLines++
		}
		a.terminal++
	}
	a.s.lines.moved(prev, st)
	return st.status.Terminal()
}

// unstarted reports whether b was cancelled while validating and its
// creator stopped before writing every line's record: such a batch never
// reaches in_progress, and the lines without a record are never
// terminal, so it stayed cancelling, in the active index, for good (its
// cancelOpen ends only the records there are). It is failed as a batch
// left validating is, after CreateTimeout; none of its lines ran
// (workers hold a line of a batch validating, and cancel one of a batch
// cancelling). A batch cancelled while validating whose records were all
// written ends cancelled, as before.
func (a *actor) unstarted(b *batchRecord) bool {
	return b.Batch.Status == batchCancelling && b.Batch.InProgressAt == nil && b.Target == "" &&
		a.ready && len(a.jobs) < b.Batch.RequestCounts.Total
}

func (a *actor) allTerminal() bool {
	return a.ready && a.total > 0 && len(a.jobs) == a.total && a.terminal == a.total
}

// usage sums the usage of the answers the batch's files report.
func (a *actor) usage() BatchUsage {
	var u BatchUsage
	for _, st := range a.jobs {
		u.add(st.usage)
	}
	return u
}

func (a *actor) counts() BatchCounts {
	c := BatchCounts{Total: a.total}
	for _, st := range a.jobs {
		switch st.kind {
		case lineOutput:
			c.Completed++
		case lineError:
			c.Failed++
		}
	}
	return c
}

// evaluate moves the batch on as far as it can; it reports whether the
// batch needs no more tracking.
func (a *actor) evaluate(ctx context.Context) bool {
	s := a.s
	b, _, err := s.getBatch(ctx, a.key)
	if errors.Is(err, ErrNotFound) {
		return a.gone(ctx) || a.forget(ctx)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("reading batch", "batch", a.id, "err", err)
		}
		return false
	}
	a.total, a.inputBytes = b.Batch.RequestCounts.Total, b.InputBytes
	a.reserve()
	now := s.now()
	switch st := b.Batch.Status; {
	case batchTerminal(st):
		return a.announce(ctx, b) && a.forget(ctx)
	case st == batchFinalizing || b.Target != "":
		return a.finalize(ctx, b.Target)
	case st == batchValidating, a.unstarted(b) && now.Sub(time.Unix(b.Batch.CreatedAt, 0)) > s.o.CreateTimeout:
		if now.Sub(time.Unix(b.Batch.CreatedAt, 0)) > s.o.CreateTimeout {
			done, failed, err := s.updateBatch(ctx, a.key, func(r *batchRecord) error {
				if r.Batch.Status != batchValidating && !a.unstarted(r) {
					return errNoChange
				}
				failBatch(r, now.Unix(), "the batch was not fully enqueued (its creator stopped)")
				return nil
			})
			// Unchanged, the batch left validating after the read above:
			// its creator finished it (or a client cancelled it, or another
			// tracker failed it). The next evaluation takes it as it is.
			// Announcing and forgetting it here dropped a batch still in
			// progress from the active index: it never expired or finished.
			return err == nil && failed && a.announce(ctx, done) && a.forget(ctx)
		}
		return false
	case !a.ready:
		return false
	case st == batchInProgress && b.Batch.ExpiresAt != nil && now.Unix() >= *b.Batch.ExpiresAt:
		if !a.allTerminal() {
			a.cancelOpen(ctx, "batch_expired", "the batch expired before this request finished", true)
			return false // the watch brings the cancellations, then finalize
		}
		return a.finalize(ctx, batchExpired)
	case a.allTerminal():
		target := batchCompleted
		if st == batchCancelling {
			target = batchCancelled
		}
		return a.finalize(ctx, target)
	case st == batchCancelling:
		a.cancelOpen(ctx, "batch_cancelled", "the batch was cancelled", false)
	}
	if c, u := a.counts(), a.usage(); c != b.Batch.RequestCounts || u != b.Batch.Usage {
		_, _, err := s.updateBatch(ctx, a.key, func(r *batchRecord) error {
			if batchTerminal(r.Batch.Status) || r.Target != "" || r.Batch.RequestCounts == c && r.Batch.Usage == u {
				return errNoChange
			}
			r.Batch.RequestCounts, r.Batch.Usage = c, u
			return nil
		})
		a.countsWritten(ctx, err)
	}
	return false
}

// countsWritten logs a failing write of the batch's counts once when
// the failures start and once when a write succeeds again: a full store
// refuses every one until room frees, and the tracker tries each
// TrackInterval (it logged a line a second per batch, in every process
// tracking it). Counted in sluice_jobs_batch_updates_failed_total.
func (a *actor) countsWritten(ctx context.Context, err error) {
	s := a.s
	switch {
	case err == nil && a.countsFailing:
		s.log.Info("batch counts written again", "batch", a.id, "failed_writes", a.countsFailures,
			"for", s.now().Sub(a.countsFailingSince).Round(time.Millisecond).String())
		a.countsFailing, a.countsFailures = false, 0
	case err == nil, ctx.Err() != nil:
	default:
		s.stats.batchUpdatesRefused.Add(1)
		a.countsFailures++
		if a.countsFailing {
			s.log.Debug("updating batch counts", "batch", a.id, "err", err)
			return
		}
		a.countsFailing, a.countsFailingSince = true, s.now()
		s.log.Warn("updating batch counts failed: the batch's progress shows late until a write succeeds (said again when it does)",
			"batch", a.id, "err", err)
	}
}

// cancelOpen cancels the batch's queued jobs (and running ones, with
// running), all at once: a worker that started one meanwhile wins its
// compare-and-swap and this one loses, which the next evaluation sees.
func (a *actor) cancelOpen(ctx context.Context, code, why string, running bool) {
	now := a.s.now().Unix()
	var ws []asyncWrite
	for _, st := range a.jobs {
		if st.rec == nil || !(st.status == StatusQueued || running && st.status == StatusRunning) {
			continue
		}
		r := *st.rec
		cancelRecord(&r, now, code, why)
		b, err := json.Marshal(&r)
		if err != nil {
			continue
		}
		ws = append(ws, asyncWrite{bucket: jobsBucket, key: batchJobKey(a.id, r.Index), value: b, rev: st.rev})
	}
	if len(ws) == 0 {
		return
	}
	if _, err := a.s.writeAll(ctx, ws); err != nil && ctx.Err() == nil {
		a.s.log.Warn("cancelling batch jobs", "batch", a.id, "err", err)
	}
}

// announce writes (and queues) the ended batch b's webhook events if
// nobody has yet: before the batch leaves the active index, so a tracker
// that dies in between leaves it to the next one (batchevent.go).
func (a *actor) announce(ctx context.Context, b *batchRecord) bool {
	if err := a.s.batchEnded(ctx, b); err != nil {
		return a.failed("recording the batch's webhook events", err)
	}
	return true
}

// gone reports whether the batch's index entry is gone too (a refused
// creation undone): then there is nothing to forget, and no delete to
// write, which a full store would refuse.
func (a *actor) gone(ctx context.Context) bool {
	_, err := a.s.batch.Get(ctx, activeKey(a.id))
	return errors.Is(err, jetstream.ErrKeyNotFound)
}

// forget drops the batch from the active index: a delete, which every
// tracker's watch of the index sees as an event (a prompt recount on
// other replicas), then a purge of the key's subject, which leaves
// nothing. A KV delete alone leaves a marker for the bucket's max age
// (queue.retention, a week), and every listing of the index (each scan,
// every TrackInterval while a batch is active; each /metrics scrape's
// Backlog) and every new watch of it is sent every marker: 100,000
// finished batches cost each listing 1.3 s and the embedded server's
// heap 150 MiB. A watcher that has not read the delete when the purge
// lands never sees it; nothing depends on it: the scan every
// TrackInterval of a tracker with an actor finds the entry gone (and
// nudges that actor), and the actor that forgets nudges its own tracker.
// A failed purge leaves the marker to retention: a cost, not an error.
func (a *actor) forget(ctx context.Context) bool {
	if err := a.s.batch.Delete(ctx, activeKey(a.id)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		if ctx.Err() == nil {
			a.s.log.Warn("unindexing batch", "batch", a.id, "err", err)
		}
		return false
	}
	if err := a.s.purgeIndexMarker(ctx, a.id); err != nil && ctx.Err() == nil {
		a.s.log.Debug("purging a batch's index entry (retention removes it)", "batch", a.id, "err", err)
	}
	return true
}
