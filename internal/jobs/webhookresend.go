package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Pending webhooks outlive the process that would have sent them, and are
// resent by whichever live process notices, as a Sidekiq-style reliable
// fetch does with a dead worker's jobs:
//
//   - A job submitted with a webhook gets an index key, w.<id>, in the
//     jobs bucket next to its record; recordWebhook deletes it once the
//     outcome is final.
//   - The write that makes such a job terminal names its process on the
//     record (jobRecord.HookOwner, set by transition: no extra write), the
//     process that notifies and sends it.
//   - Every process with a webhook secret keeps a heartbeat key,
//     wh.<hash of its owner id>, holding a claim until now + WebhookLease,
//     renewed every WebhookSweepInterval and deleted when it closes. A
//     process running the embedded NATS server names the server's run on
//     it (fileClaim.Via): read through a later run, the claim has lapsed
//     at once (claimLapsed), so a lone gateway killed and restarted
//     resends at once instead of after its predecessor's lease.
//   - Every WebhookSweepInterval (the first time as it opens) the process
//     that holds the sweep lease (one key, webhook-sweep, taken by
//     compare-and-swap: one replica sweeps at a time) lists the index and
//     queues again, at most webhookSweepMax records looked at per sweep,
//     every finished job whose webhook is still pending and whose owner is
//     gone: no heartbeat (closed), a lapsed one (killed, or wedged for a
//     whole lease), none named (records written before owners were), or
//     this process itself when the webhook is in none of its queues and
//     its job finished a lease ago. Every process that heartbeats
//     competes for the lease, whether it runs workers or not: sweeping is
//     not a worker's work, and a gateway that only accepts jobs (workers
//     0, `sluice worker` processes running them) is often the one left
//     alive when a worker process is killed.
//   - A resent webhook is claimed just before its first attempt, by a
//     compare-and-swap that names this process as its owner if the record
//     still shows it pending under the owner the sweep saw. A sweep that
//     raced another, or a sender that recorded the outcome meanwhile,
//     makes the claim fail and the webhook is not sent again (counted
//     skipped).
//
// The outcome is recorded after the receiver's 2xx (it cannot be before:
// a failed send would be recorded delivered); an outcome whose write
// fails is held in memory and written again at every sweep interval, so
// the live process never resends what it delivered. Only a process that
// dies between the receiver's answer and the record of it, or one wedged
// past its lease that wakes up, makes a duplicate: at least once, with
// the same webhook-id (the job id) on every delivery, for receivers to
// deduplicate on, as Standard Webhooks intends.
//
// Resends go through the same queues as any webhook (per destination,
// webhookAttempts each) but are never dropped: a queue without room
// leaves the webhook for the next sweep. The sweep also sends webhooks
// whose record holds a next attempt's time once it has come, whoever
// owns them (a failed round scheduled it: nobody holds it; webhookretry.go,
// one attempt each), and those a queue bound kept out of their process's
// queues (pending, owned by a live process that does not hold them: sent
// once their job finished a lease ago). Each sweep starts after the key
// the previous one stopped at, so webhooks waiting hours for their next
// attempt do not keep it from the rest.

func webhookIndexKey(id string) string { return "w." + id }

// webhookIndexFilter lists the index keys.
const webhookIndexFilter = "w.>"

// webhookSweepKey holds the sweep lease: a fileClaim.
const webhookSweepKey = "webhook-sweep"

// webhookSweepMax bounds the records one sweep reads; the rest wait for
// the next sweep.
const webhookSweepMax = 256

// heartbeatKey is owner's heartbeat key (owner ids carry the configured
// connection name, which need not be a valid key token).
func heartbeatKey(owner string) string {
	h := sha256.Sum256([]byte(owner))
	return "wh." + hex.EncodeToString(h[:12])
}

// Defaults of Options.WebhookLease and Options.WebhookSweepInterval.
const (
	DefaultWebhookLease         = 30 * time.Second
	DefaultWebhookSweepInterval = 10 * time.Second
)

// indexWebhook records that id's webhook is pending. Failing it is
// logged: the webhook is still sent by this process, only not resent
// if the process dies before sending it.
func (s *Store) indexWebhook(ctx context.Context, id string) {
	if _, err := s.jobs.Put(ctx, webhookIndexKey(id), nil); err != nil {
		s.log.Warn("indexing a pending webhook: not resent if the process stops before sending it", "job", id, "err", s.storeFull(err))
	}
}

// unindexWebhook forgets id's webhook, whose outcome is recorded. It
// purges the key's subject rather than deleting the key: a KV delete
// leaves a marker per key for the bucket's max age (queue.retention,
// a week), and every sweep's listing (a watch of "w.>") is sent every
// marker before the live keys: the markers of every webhook of the week,
// every WebhookSweepInterval. A purge of the stream's subject leaves
// nothing (as releaseClaim's).
func (s *Store) unindexWebhook(ctx context.Context, id string) {
	st, err := s.hooks.jobsStream(ctx)
	if err == nil {
		err = st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+jobsBucket+"."+webhookIndexKey(id)))
	}
	if err != nil {
		s.log.Debug("removing a webhook index key (retention removes it)", "job", id, "err", err)
	}
}

// jobsStream is the jobs bucket's stream, looked up once (a stream
// info request) and kept: a handle is its name and the connection.
func (w *webhooks) jobsStream(ctx context.Context) (jetstream.Stream, error) {
	w.streamMu.Lock()
	defer w.streamMu.Unlock()
	if w.stream != nil {
		return w.stream, nil
	}
	st, err := w.s.js.Stream(ctx, "KV_"+jobsBucket)
	if err == nil {
		w.stream = st
	}
	return st, err
}

// startBeats writes the first heartbeat, before this process can own a
// webhook, and starts the loop that renews it and sweeps, the first
// sweep at once; Open calls it when webhooks are signed (unsigned ones
// are never sent, so never pending long, and a process without the
// secret could not resend another's).
func (w *webhooks) startBeats(ctx context.Context) {
	if len(w.s.o.WebhookSecret) == 0 {
		return
	}
	if err := w.beat(ctx); err != nil {
		w.s.log.Warn("webhook heartbeat: other processes may resend this one's webhooks", "err", err)
	}
	w.s.wg.Go(func() { w.run(w.s.ctx) })
}

// run sweeps, then every WebhookSweepInterval renews the heartbeat,
// writes held outcomes again and sweeps, until ctx ends; then it deletes
// the heartbeat and gives the sweep lease back, so a successor resends at
// once what this process left pending.
func (w *webhooks) run(ctx context.Context) {
	defer w.release()
	for first := true; ; first = false {
		if !first {
			t := time.NewTimer(w.s.o.WebhookSweepInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			if err := w.beat(ctx); err != nil && ctx.Err() == nil {
				w.s.log.Warn("webhook heartbeat: other processes may resend this one's webhooks", "err", err)
			}
			w.writeHeld()
		}
		if ok, err := w.takeSweepLease(ctx); err != nil || !ok {
			if err != nil && ctx.Err() == nil {
				w.s.log.Warn("taking the webhook sweep lease", "err", err)
			}
			continue
		}
		c, err := w.sweep(ctx)
		w.sweeps.Add(1)
		if err != nil && ctx.Err() == nil {
			w.s.log.Warn("sweeping pending webhooks", "err", err)
		}
		level := w.s.log.Debug
		if c.queued+c.held+c.cleaned > 0 {
			level = w.s.log.Info
		}
		level("webhook sweep", "listed", c.listed, "looked_at", c.lookedAt, "queued", c.queued,
			"held_for_room", c.held, "owner_alive", c.alive, "retry_later", c.waiting, "cleaned", c.cleaned, "left_for_next", c.left)
	}
}

// beat renews this process's heartbeat.
func (w *webhooks) beat(ctx context.Context) error {
	ctx, cancel := w.s.requestContext(ctx)
	defer cancel()
	b, _ := json.Marshal(w.s.webhookClaim(w.s.now()))
	_, err := w.s.jobs.Put(ctx, heartbeatKey(w.s.owner), b)
	return err
}

// release deletes the heartbeat and the sweep lease if held, as the
// Store closes (its context has ended: a bounded one of its own, which
// also ends when the NATS connection is away, cleanupContext). Bounded by
// RequestTimeout alone, a stop while an external NATS was down (restarted,
// or stopped before the gateway) waited out RequestTimeout here, twice:
// past the stop's bound (app's queueStopBound, the worker's
// workerCloseBound), a stop not clean, exit 1, with nothing held. The
// heartbeat and the lease lapse by themselves.
func (w *webhooks) release() {
	ctx, cancel := w.s.cleanupContext()
	defer cancel()
	if err := w.s.jobs.Delete(ctx, heartbeatKey(w.s.owner)); err != nil {
		w.s.log.Debug("deleting the webhook heartbeat (it lapses)", "err", err)
	}
	if e, err := w.s.jobs.Get(ctx, webhookSweepKey); err == nil {
		if c, ok := readClaim(e.Value()); ok && c.Owner == w.s.owner {
			_ = w.s.jobs.Delete(ctx, webhookSweepKey, jetstream.LastRevision(e.Revision()))
		}
	}
}

// takeSweepLease takes or renews the sweep lease; false while another
// process holds it.
func (w *webhooks) takeSweepLease(ctx context.Context) (bool, error) {
	ctx, cancel := w.s.requestContext(ctx)
	defer cancel()
	now := w.s.now()
	b, _ := json.Marshal(w.s.webhookClaim(now))
	e, err := w.s.jobs.Get(ctx, webhookSweepKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		_, err = w.s.jobs.Create(ctx, webhookSweepKey, b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
		return err == nil, err
	}
	if err != nil {
		return false, err
	}
	if c, ok := readClaim(e.Value()); ok && c.Owner != w.s.owner && !w.s.claimLapsed(c, now) {
		return false, nil
	}
	_, err = w.s.jobs.Update(ctx, webhookSweepKey, b, e.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	return err == nil, err
}

// sweepCounts is what one sweep did, for its log line.
type sweepCounts struct {
	listed, lookedAt, queued, held, alive, waiting, cleaned, left int
}

// sweep queues the pending webhooks of finished jobs whose sender is
// gone, looking at most at webhookSweepMax records.
func (w *webhooks) sweep(ctx context.Context) (c sweepCounts, err error) {
	keys, err := w.s.listKeys(ctx, jobsBucket, webhookIndexFilter)
	if err != nil {
		return c, err
	}
	c.listed = len(keys)
	keys = w.rotate(keys)
	alive := map[string]bool{} // owner -> heartbeat current, this sweep
	now := w.s.now()
	for i, key := range keys {
		if c.lookedAt == webhookSweepMax {
			c.left = len(keys) - i
			break
		}
		w.mu.Lock()
		w.sweepAfter = key
		w.mu.Unlock()
		id := strings.TrimPrefix(key, "w.")
		if w.busy(id) {
			c.alive++
			continue // in a queue here, or its outcome waiting to be written
		}
		c.lookedAt++
		r, _, err := w.s.getJob(ctx, hookRecordKey(id))
		switch {
		case errors.Is(err, ErrNotFound):
			w.s.unindexWebhook(ctx, id) // expired, or its submit failed
			c.cleaned++
			continue
		case err != nil:
			return c, err
		case r.Job.WebhookState == nil || r.Job.WebhookState.Status != WebhookPending:
			w.s.unindexWebhook(ctx, id)
			c.cleaned++
			continue
		case !r.Job.Status.Terminal() || r.Webhook == "":
			continue // its worker sends it when the job finishes
		}
		retry := r.Job.WebhookState.NextAttemptAt != 0
		if retry && now.Unix() < r.Job.WebhookState.NextAttemptAt {
			c.waiting++ // failed so far, its next attempt later
			continue
		}
		// A due retry is nobody's in flight: whoever sweeps sends it.
		if !retry {
			gone, err := w.ownerGone(ctx, r, now, alive)
			if err != nil {
				return c, err
			}
			if !gone {
				c.alive++
				continue
			}
		}
		reason, ok := w.enqueue(&hookItem{j: r.job(), ev: r.Event, resend: true, retry: retry, from: r.HookOwner, due: r.Job.WebhookState.NextAttemptAt})
		if !ok {
			if reason == dropShuttingDown {
				return c, nil
			}
			c.held++ // no room now: the next sweep
			continue
		}
		c.queued++
		w.resent.Add(1)
	}
	return c, nil
}

// rotate orders keys (index keys: random job ids) to start after the
// key the previous sweep stopped at, wrapping around, so a sweep that
// stops at webhookSweepMax is followed by one that looks at the rest.
func (w *webhooks) rotate(keys []string) []string {
	slices.Sort(keys)
	w.mu.Lock()
	after := w.sweepAfter
	w.mu.Unlock()
	i, found := slices.BinarySearch(keys, after)
	if found {
		i++
	}
	return append(keys[i:len(keys):len(keys)], keys[:i]...)
}

// ownerGone reports whether r's webhook has no live sender: its owner's
// heartbeat is missing or lapsed, or (this process, which does not hold
// it in a queue) it finished a lease ago, past the moment between its
// terminal write and its notify.
func (w *webhooks) ownerGone(ctx context.Context, r *jobRecord, now time.Time, alive map[string]bool) (bool, error) {
	switch owner := r.HookOwner; owner {
	case "":
		return true, nil // written before records named their sender
	case w.s.owner:
		return now.Sub(time.Unix(r.Job.FinishedAt, 0)) >= w.s.o.WebhookLease, nil
	default:
		if a, ok := alive[owner]; ok {
			return !a, nil
		}
		e, err := w.s.jobs.Get(ctx, heartbeatKey(owner))
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return false, err
		}
		a := false
		if err == nil {
			c, ok := readClaim(e.Value())
			a = ok && !w.s.claimLapsed(c, now)
		}
		alive[owner] = a
		return !a, nil
	}
}

// webhookClaim is this process's heartbeat or sweep lease written at now.
func (s *Store) webhookClaim(now time.Time) fileClaim {
	return fileClaim{Owner: s.owner, Until: now.Add(s.o.WebhookLease).UnixMilli(), Lease: s.o.WebhookLease.Milliseconds(), Via: s.via()}
}

// via is the run of the embedded NATS server this Store writes through,
// "" over the network (claims: fileClaim.Via).
func (s *Store) via() string {
	if s.o.Embedded == nil {
		return ""
	}
	return s.o.Embedded.RunName()
}

// claimLapsed reports whether c no longer holds at now: its time is up,
// or it was written through a run of the embedded NATS server other than
// the one this Store is connected to. An embedded server is its store
// directory's only server (no cluster) and its process's connections to
// it are in-process pipes that cannot reach a later run, so such a claim's
// process is dead: killed (a stopped one deletes its heartbeat).
//
// A claim that ends more than two of its leases ahead of now is lapsed
// too: no writer claims more than a lease ahead of its own clock, so its
// writer's clock was more than a lease fast when it wrote it. Before, such
// a claim held until its until_ms: a process whose clock ran a year fast,
// then died, held the sweep lease (no pending webhook or batch event
// resent by anyone) and kept its own webhooks "alive" for that year. A
// live writer that fast loses its claims to the others: two sweepers, or
// its webhooks resent beside it, which claimResend's compare-and-swap and
// at-least-once delivery (the same webhook-id) already allow for.
func (s *Store) claimLapsed(c fileClaim, now time.Time) bool {
	return c.lapsed(now, s.o.WebhookLease, func() string { return s.connectedRun(c.Via) })
}

// connectedRun is the run of the embedded server this Store is connected
// to, as a claim written through it says it: its name (RunName), which
// outlives a disk fault's restart of the server; or, for a claim written
// by a gateway from before names were written, its id, if that is the
// id of the server connected to.
func (s *Store) connectedRun(via string) string {
	if id := s.nc.ConnectedServerId(); id != "" && id == via {
		return id
	}
	return s.nc.ConnectedServerName()
}

// maxClaimLease bounds the lease_ms a claim is read with (a longer one is
// taken as not said): no writer claims for a day.
const maxClaimLease = 24 * time.Hour

// lapsed is claimLapsed given this Store's lease (for claims that do not
// say theirs: written before lease_ms was) and the id of the embedded
// server it is connected to ("" over the network), asked only of a claim
// made through one.
func (c fileClaim) lapsed(now time.Time, lease time.Duration, connectedServer func() string) bool {
	if c.Lease > 0 && c.Lease <= maxClaimLease.Milliseconds() {
		lease = time.Duration(c.Lease) * time.Millisecond
	}
	// The claim's lease once, and once more for its writer's clock being
	// ahead of this one; compared as a difference, which cannot overflow
	// once now < Until.
	if now.UnixMilli() >= c.Until || c.Until-now.UnixMilli() > 2*lease.Milliseconds() {
		return true
	}
	if c.Via == "" {
		return false // over the network: only its time tells
	}
	cur := connectedServer()
	return cur != "" && cur != c.Via
}

// readClaim reads a claim record (a heartbeat or the sweep lease) as
// stored in the jobs bucket; false when it is not one, which every reader
// takes as no claim held.
func readClaim(b []byte) (fileClaim, bool) {
	var c fileClaim
	if err := json.Unmarshal(b, &c); err != nil {
		return fileClaim{}, false
	}
	return c, true
}

// claimResend makes this process the owner of a resent webhook just
// before its first attempt, if the record still shows it pending under
// the owner the sweep saw and with the next attempt's time it saw (due,
// 0 for none); false when another process claimed it or its outcome is
// recorded. Claiming a due retry clears its time, so a second claimer
// that saw the same record fails even when the owner is unchanged (a
// live owner's own retry, which another sweeper may also find due).
func (w *webhooks) claimResend(ctx context.Context, id, from string, due int64) (bool, error) {
	ctx, cancel := w.s.requestContext(ctx)
	defer cancel()
	claimed := false
	_, _, err := w.s.transition(ctx, hookRecordKey(id), func(r *jobRecord) error {
		claimed = false
		st := r.Job.WebhookState
		if st == nil || st.Status != WebhookPending || r.HookOwner != from || st.NextAttemptAt != due {
			return errNoChange
		}
		claimed = true
		if from == w.s.owner && due == 0 {
			return errNoChange
		}
		r.HookOwner = w.s.owner
		st.NextAttemptAt = 0
		return nil
	})
	return claimed, err
}
