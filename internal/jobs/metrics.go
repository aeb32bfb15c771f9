package jobs

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats are the Store's counters since Open (this process only).
type Stats struct {
	// Executed counts Executor calls.
	Executed uint64
	// Duplicates counts deliveries of jobs already finished, or running
	// under another message, acknowledged without running them again.
	Duplicates uint64
	// Cancelled counts jobs a worker found cancelled (or in a cancelled or
	// expired batch) and dropped.
	Cancelled uint64
	// Retried counts jobs sent back to the queue: busy (429/503), failed
	// attempts and work interrupted by shutdown.
	Retried uint64
	// DeadLettered counts jobs that failed MaxAttempts times.
	DeadLettered uint64
	// Revoked counts jobs ended unrun because their tenant's last API
	// key was removed (ErrRevoked).
	Revoked uint64
	// AnswersTooLarge counts executions whose answer was over the bound a
	// run holds (ErrAnswerTooLarge): failed attempts, among Retried or
	// DeadLettered.
	AnswersTooLarge uint64
	// Orphans counts messages dropped because their record never appeared
	// (the submitter died between publishing and writing it).
	Orphans uint64
	// WebhooksSent and WebhooksFailed count webhook deliveries.
	WebhooksSent   uint64
	WebhooksFailed uint64
}

type counters struct {
	executed, duplicates, cancelled, retried, dead, orphans, revoked atomic.Uint64
	answersTooLarge                                                  atomic.Uint64
	webhookSent, webhookFailed                                       atomic.Uint64
	// storeRefusedBudget counts new work refused at the admission line,
	// storeRefusedServer writes JetStream refused for lack of room.
	storeRefusedBudget, storeRefusedServer atomic.Uint64
	// storeRefusedReserved counts new work refused under the line because
	// the active batches' expected results take the room (storereserve.go).
	storeRefusedReserved atomic.Uint64
	// batchUpdatesRefused counts batch count updates that failed (a full
	// store refuses them until room frees; tracker.go says so once).
	batchUpdatesRefused atomic.Uint64
	// classesLost counts pulls answered 503 that took a class down (gone.go).
	classesLost atomic.Uint64
	// storeRefusedFailing counts jobs, batches and files refused because
	// the embedded server's disk refused writes (ErrStoreFailing).
	storeRefusedFailing atomic.Uint64
	// startsRefused counts job starts JetStream refused for lack of room,
	// storePauses the pauses of a worker they began, workersPaused the
	// workers paused now (storepause.go).
	startsRefused, storePauses atomic.Uint64
	workersPaused              atomic.Int64
	// resultsRefused counts result writes JetStream refused for lack
	// of room (heldresult.go).
	resultsRefused atomic.Uint64
	// requeuesRefused counts writes sending a job back to the queue (a
	// busy answer, a failed attempt) JetStream refused for lack of room:
	// held and written again as results are (worker.go requeue).
	requeuesRefused atomic.Uint64
	// fileClaimWaits counts finalizations that left a batch's result
	// files to the process holding the claim on them, fileClaimTakeovers
	// the claims taken over from a writer whose lease ended (fileclaim.go).
	fileClaimWaits, fileClaimTakeovers atomic.Uint64
	// orphanChunksPurged counts the chunk sets of file writes that never
	// committed the tracker purged (chunksweep.go).
	orphanChunksPurged atomic.Uint64
	// expiredFilesDeleted counts the files past their expires_at the
	// tracker deleted (expiresweep.go).
	expiredFilesDeleted atomic.Uint64
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		Executed: c.executed.Load(), Duplicates: c.duplicates.Load(), Cancelled: c.cancelled.Load(),
		Retried: c.retried.Load(), DeadLettered: c.dead.Load(), Orphans: c.orphans.Load(), Revoked: c.revoked.Load(),
		AnswersTooLarge: c.answersTooLarge.Load(), WebhooksSent: c.webhookSent.Load(), WebhooksFailed: c.webhookFailed.Load(),
	}
}

// Backlog is the jobs accepted and not finished yet, queued or running
// anywhere (messages in the work-queue stream), the batches not finished
// yet, and the store's size against its bound; one bounded round trip
// each to JetStream.
type Backlog struct {
	Jobs    uint64
	Batches int
	// StoreBytes is what the queue holds in JetStream; StoreLimitBytes is
	// Options.MaxStoreBytes (0: unbounded).
	StoreBytes, StoreLimitBytes int64
	// StoreFailing is the embedded store's disk fault (Embedded
	// .StoreFault), "" without one; set even when the rest is not read.
	StoreFailing string
	// StoreDamaged is what the embedded store's start found damaged on
	// disk (Embedded.StoreDamageText), "" if nothing.
	StoreDamaged string
	// ClassesDown is the classes whose consumer this process's workers
	// cannot create, their jobs waiting (Store.ClassesDown), "" if none.
	ClassesDown string
}

// Backlog reads the queue's depth and the active batches.
func (s *Store) Backlog(ctx context.Context) (Backlog, error) {
	var bl Backlog
	if fault := s.o.Embedded.StoreFault(); fault != nil {
		bl.StoreFailing = fault.Error()
	}
	bl.StoreDamaged = s.o.Embedded.StoreDamageText()
	bl.ClassesDown = s.ClassesDown()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	stream, err := s.js.Stream(ctx, workStream)
	if err != nil {
		return bl, fmt.Errorf("jobs backlog: %w", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return bl, fmt.Errorf("jobs backlog: %w", err)
	}
	batches, err := s.activeIndex(ctx) // a finished batch's marker counts until a tracker's scan purges it
	if err != nil {
		return bl, fmt.Errorf("active batches: %w", err)
	}
	u, err := s.StoreUsage(ctx)
	if err != nil {
		return bl, err
	}
	bl.Jobs, bl.Batches, bl.StoreBytes, bl.StoreLimitBytes = info.State.Msgs, len(batches), u.Bytes, u.Limit
	return bl, nil
}

// collector exports Stats as Prometheus counters.
type collector struct{ s *Store }

var statDescs = []struct {
	desc *prometheus.Desc
	get  func(Stats) uint64
}{
	{prometheus.NewDesc("sluice_jobs_executed_total", "Job executions.", nil, nil), func(s Stats) uint64 { return s.Executed }},
	{prometheus.NewDesc("sluice_jobs_duplicates_total", "Deliveries of finished jobs skipped.", nil, nil), func(s Stats) uint64 { return s.Duplicates }},
	{prometheus.NewDesc("sluice_jobs_cancelled_total", "Cancelled jobs dropped by workers.", nil, nil), func(s Stats) uint64 { return s.Cancelled }},
	{prometheus.NewDesc("sluice_jobs_retried_total", "Jobs sent back to the queue.", nil, nil), func(s Stats) uint64 { return s.Retried }},
	{prometheus.NewDesc("sluice_jobs_dead_lettered_total", "Jobs failed after their last attempt.", nil, nil), func(s Stats) uint64 { return s.DeadLettered }},
	{prometheus.NewDesc("sluice_jobs_revoked_total", "Jobs ended failed with api_key_revoked, not run: a config reload removed the last API key of their tenant.", nil, nil), func(s Stats) uint64 { return s.Revoked }},
	{prometheus.NewDesc("sluice_jobs_answers_too_large_total", "Job executions whose answer was over the most a job's run holds in memory (64 MiB): failed attempts, retried then dead-lettered as any other.", nil, nil), func(s Stats) uint64 { return s.AnswersTooLarge }},
	{prometheus.NewDesc("sluice_jobs_orphans_total", "Messages dropped for lack of a record.", nil, nil), func(s Stats) uint64 { return s.Orphans }},
	{prometheus.NewDesc("sluice_jobs_webhooks_sent_total", "Webhooks delivered.", nil, nil), func(s Stats) uint64 { return s.WebhooksSent }},
	{prometheus.NewDesc("sluice_jobs_webhooks_failed_total", "Webhooks given up on: a final answer (a 4xx other than 408/429, a refused destination), or every step of the retry schedule failed.", nil, nil), func(s Stats) uint64 { return s.WebhooksFailed }},
}

// Active batches against their bound (Options.MaxActiveBatches), as this
// process's tracker counts them, and the batches refused at it.
var (
	activeBatchesDesc = prometheus.NewDesc("sluice_jobs_active_batches",
		"Batches not finished yet, as this gateway's tracker counts them (all replicas' batches), with those it is creating.", nil, nil)
	activeBatchesLimitDesc = prometheus.NewDesc("sluice_jobs_active_batches_limit",
		"Most batches active at once (queue.max_active_batches); queue.max_active_batches_per_tenant bounds one tenant's.", nil, nil)
	batchesRefusedDesc = prometheus.NewDesc("sluice_jobs_batches_refused_total",
		"POST /v1/batches refused with 429 because the active batches were at their bound, in all or for the tenant.", nil, nil)
)

// File listings running against their bound (MaxFileListings), and those
// refused at it.
var (
	fileListingsDesc = prometheus.NewDesc("sluice_jobs_file_listings",
		"GET /v1/files listings running now in this process (each reads every file's metadata).", nil, nil)
	fileListingsLimitDesc = prometheus.NewDesc("sluice_jobs_file_listings_limit",
		"Most GET /v1/files listings running at once in a process; past it a listing is answered 503 too_many_file_listings.", nil, nil)
	fileListingsRefusedDesc = prometheus.NewDesc("sluice_jobs_file_listings_refused_total",
		"GET /v1/files listings refused with 503 because sluice_jobs_file_listings_limit were running.", nil, nil)
)

// The webhook queues (webhook.go) against their bounds, read at scrape
// time, and the webhooks dropped at a bound, by reason.
var (
	webhooksQueuedDesc = prometheus.NewDesc("sluice_jobs_webhooks_queued",
		"Webhooks of this process waiting for delivery (not counting one being delivered per destination).", nil, nil)
	webhooksQueuedLimitDesc = prometheus.NewDesc("sluice_jobs_webhooks_queued_limit",
		"Most webhooks waiting at once in all (64 per destination within it); past a bound a webhook is dropped.", nil, nil)
	webhookDestinationsDesc = prometheus.NewDesc("sluice_jobs_webhook_destinations",
		"Webhook destinations (scheme://host:port) with a delivery queue now; at most 256 at once.", nil, nil)
	webhooksDroppedDesc = prometheus.NewDesc("sluice_jobs_webhooks_dropped_total",
		"Webhooks a queue bound kept out of this process's queues, by reason (queue_full, too_many_destinations, destination_full, shutting_down); not given up: they stay pending and a sweep sends them when there is room.",
		[]string{"reason"}, nil)
	webhookResendsDesc = prometheus.NewDesc("sluice_jobs_webhook_resends_total",
		"Pending webhooks resent by this process's sweep (their sender gone, or their next scheduled attempt due), by outcome: delivered, failed (given up), skipped (claimed by another process or recorded meanwhile: not sent), rescheduled (failed again, its next attempt later).",
		[]string{"outcome"}, nil)
	webhookRetriesDesc = prometheus.NewDesc("sluice_jobs_webhook_retries_scheduled_total",
		"Job webhook delivery rounds that failed with an answer worth retrying (408, 429, 5xx, a network error) and left the webhook pending, its next attempt on the retry schedule (up to ~28 h after its job finished). Batch events' are sluice_jobs_batch_events_total{outcome=\"rescheduled\"}, not counted here.", nil, nil)
	webhookOutcomesHeldDesc = prometheus.NewDesc("sluice_jobs_webhook_outcomes_held",
		"Webhook outcomes (delivered, failed, or a failed round's next attempt time) this process holds in memory because the job store refused to record them; written again every heartbeat, meanwhile not resent by this process.", nil, nil)
	webhookOutcomesHeldLimitDesc = prometheus.NewDesc("sluice_jobs_webhook_outcomes_held_limit",
		"Most webhook outcomes held at once; past it an outcome is dropped (sluice_jobs_webhook_outcomes_dropped_total).", nil, nil)
	webhookOutcomesDroppedDesc = prometheus.NewDesc("sluice_jobs_webhook_outcomes_dropped_total",
		"Webhook outcomes the job store refused to record that the held-outcome bound left unheld: their records stay pending, so a sweep sends those webhooks again (at least once).", nil, nil)
	batchEventsDesc = prometheus.NewDesc("sluice_jobs_batch_events_total",
		"Rounds of OpenAI webhook events of ended batches (batch.completed/failed/cancelled/expired) to queue.batch_webhooks endpoints, by outcome: delivered; rescheduled (the round failed: pending, its next attempt on the retry schedule); deferred (a queue bound kept it out: pending, for the sweep); failed (a final answer, or the schedule exhausted); withdrawn (pending for an endpoint the gateways removed from queue.batch_webhooks after its batch ended: dropped unsent). Pending events are sent by the sweep, resends also counted in sluice_jobs_webhook_resends_total.",
		[]string{"outcome"}, nil)
)

// backlogDesc is the queue's depth, read from the stream at scrape time.
var backlogDesc = prometheus.NewDesc("sluice_jobs_backlog",
	"Jobs accepted and not finished yet (queued or running): messages in the work-queue stream.", nil, nil)

// The store's size against queue.max_store_bytes, read at scrape time
// (one round trip), and the new work refused for lack of room, by reason:
// "budget" at the admission line, "server" when JetStream refused a write.
var (
	storeBytesDesc = prometheus.NewDesc("sluice_jobs_store_bytes",
		"Bytes the queue's NATS account holds in JetStream (jobs, bodies, results, batches, files).", nil, nil)
	storeLimitDesc = prometheus.NewDesc("sluice_jobs_store_limit_bytes",
		"queue.max_store_bytes (0: unbounded); new work is refused from 90% of it.", nil, nil)
	storeRefusedDesc = prometheus.NewDesc("sluice_jobs_store_refused_total",
		"Jobs, batches and files refused, by reason (budget: at the admission line, 507; reserved: under the line, but the active batches' expected results take the room left, 507; server: JetStream refused the write, 507; disk: the embedded store's disk refused writes, 503 storage_unavailable).",
		[]string{"reason"}, nil)
	storeReservedDesc = prometheus.NewDesc("sluice_jobs_store_reserved_bytes",
		"Bytes the active batches are still expected to write (their lines' results and result files, an estimate): new work is refused once the store's bytes plus these reach the admission line.", nil, nil)
	classesLostDesc = prometheus.NewDesc("sluice_jobs_worker_consumer_lost_total",
		"Pulls answered 503 No Responders that took a class down (its consumer gone, or not answering); the worker makes the consumer again. Rising while sluice_jobs_worker_classes_down stays up: the consumer can be made but its pulls keep failing.", nil, nil)
	batchUpdatesRefusedDesc = prometheus.NewDesc("sluice_jobs_batch_updates_failed_total",
		"Writes of a batch's request counts that failed (a full store refuses them until room frees): the batch's progress shows late, nothing is lost.", nil, nil)
	storeFailingDesc = prometheus.NewDesc("sluice_jobs_store_failing",
		"1 while the embedded job store's disk refuses writes (no space left, read-only, I/O errors) and the gateway waits to restart JetStream on it.", nil, nil)
	storeWriteFailuresDesc = prometheus.NewDesc("sluice_jobs_store_write_failures_total",
		"Writes the embedded job store's disk refused, as nats-server reported them.", nil, nil)
	classesDownDesc = prometheus.NewDesc("sluice_jobs_worker_classes_down",
		"Job classes whose queue consumer this process's workers cannot create: their jobs wait while the other classes run, and the workers retry with a backoff (see the gateway's error line and /status jobs.classes_down).", nil, nil)
	storeDamagedDesc = prometheus.NewDesc("sluice_jobs_store_damaged_streams",
		"Streams of the embedded job store found damaged on disk at this start (metadata unreadable, messages lost, a consumer unreadable and made again): see the gateway's error line and /status jobs.store_damaged.", nil, nil)
	storeLostDesc = prometheus.NewDesc("sluice_jobs_store_lost_messages",
		"Messages (job records, bodies, queue entries, batch records, file chunks) the embedded job store's start found lost on disk, as far as known.", nil, nil)
	storeRecoveriesDesc = prometheus.NewDesc("sluice_jobs_store_recoveries_total",
		"Disk faults of the embedded job store ended by starting its server again on its data directory.", nil, nil)
	storeRestartFailuresDesc = prometheus.NewDesc("sluice_jobs_store_restart_failures_total",
		"Restarts of the embedded job store's server, to end a disk fault, whose new server did not start (its port taken, JetStream refused on the data directory): the queue is down until one starts, tried again with a backoff.", nil, nil)
)

// Workers paused on a full store (storepause.go): now, the pauses begun,
// and the job starts JetStream refused, read at scrape time.
var (
	workersPausedDesc = prometheus.NewDesc("sluice_jobs_workers_paused",
		"Workers of this process taking no jobs because the job store refused a job's start for lack of room.", nil, nil)
	storePausesDesc = prometheus.NewDesc("sluice_jobs_worker_store_pauses_total",
		"Pauses of a worker on a full job store: from a refused job start until a start is written again.", nil, nil)
	startsRefusedDesc = prometheus.NewDesc("sluice_jobs_worker_starts_refused_total",
		"Job starts (record writes) JetStream refused for lack of room; the jobs stay queued.", nil, nil)
	requeuesRefusedDesc = prometheus.NewDesc("sluice_jobs_worker_requeues_refused_total",
		"Writes sending a job back to the queue (a busy answer, a failed attempt) JetStream refused for lack of room; written again once there is room.", nil, nil)
)

// Results of finished jobs a full store refused (heldresult.go): the
// refused writes, the results held now and their bytes, and those the
// bound on held bytes dropped (their jobs run again).
var (
	resultsRefusedDesc = prometheus.NewDesc("sluice_jobs_worker_results_refused_total",
		"Writes of finished jobs' results JetStream refused for lack of room; the result is held and written again.", nil, nil)
	heldResultsDesc = prometheus.NewDesc("sluice_jobs_held_results",
		"Finished jobs' results this process's workers hold in memory until the job store has room to record them.", nil, nil)
	heldResultBytesDesc = prometheus.NewDesc("sluice_jobs_held_result_bytes",
		"Bytes of the results held until the job store has room, bounded by the held-result limit.", nil, nil)
	heldResultBytesLimitDesc = prometheus.NewDesc("sluice_jobs_held_result_bytes_limit",
		"Most bytes of results held at once; past it a result is dropped and its job runs again after AckWait.", nil, nil)
	resultsDroppedDesc = prometheus.NewDesc("sluice_jobs_held_results_dropped_total",
		"Results a full job store refused that the held-result bound left unheld: their jobs run again after AckWait.", nil, nil)
)

// Finalizations that left a batch's result files to the process holding
// the claim on them, and claims taken over from a writer whose lease
// ended (fileclaim.go).
var (
	fileClaimWaitsDesc = prometheus.NewDesc("sluice_jobs_batch_file_claim_waits_total",
		"Batch finalizations by this gateway's tracker that left the result files to the gateway holding the claim on them.", nil, nil)
	fileClaimTakeoversDesc = prometheus.NewDesc("sluice_jobs_batch_file_claim_takeovers_total",
		"Claims on a batch's result files this gateway took over from a writer whose lease ended (a writer that died mid-write).", nil, nil)
	orphanChunksPurgedDesc = prometheus.NewDesc("sluice_jobs_orphan_file_writes_purged_total",
		"File writes that never committed (a process killed mid-write) whose chunks this gateway's tracker purged from the object store.", nil, nil)
	expiredFilesDeletedDesc = prometheus.NewDesc("sluice_jobs_expired_files_deleted_total",
		"Files past their expires_at (expires_after, output_expires_after) whose content this gateway's tracker deleted from the object store.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- classesDownDesc
	ch <- storeFailingDesc
	ch <- storeWriteFailuresDesc
	ch <- storeRecoveriesDesc
	ch <- storeRestartFailuresDesc
	ch <- storeDamagedDesc
	ch <- storeLostDesc
	ch <- fileClaimWaitsDesc
	ch <- fileClaimTakeoversDesc
	ch <- orphanChunksPurgedDesc
	ch <- expiredFilesDeletedDesc
	ch <- resultsRefusedDesc
	ch <- heldResultsDesc
	ch <- heldResultBytesDesc
	ch <- heldResultBytesLimitDesc
	ch <- resultsDroppedDesc
	ch <- workersPausedDesc
	ch <- storePausesDesc
	ch <- startsRefusedDesc
	ch <- requeuesRefusedDesc
	ch <- storeBytesDesc
	ch <- storeLimitDesc
	ch <- storeRefusedDesc
	ch <- storeReservedDesc
	ch <- batchUpdatesRefusedDesc
	ch <- classesLostDesc
	for _, d := range statDescs {
		ch <- d.desc
	}
	ch <- backlogDesc
	ch <- activeBatchesDesc
	ch <- activeBatchesLimitDesc
	ch <- batchesRefusedDesc
	ch <- fileListingsDesc
	ch <- fileListingsLimitDesc
	ch <- fileListingsRefusedDesc
	ch <- batchLinesDesc
	ch <- batchLinesLimitDesc
	ch <- trackedBatchesDesc
	ch <- webhooksQueuedDesc
	ch <- webhooksQueuedLimitDesc
	ch <- webhookDestinationsDesc
	ch <- webhooksDroppedDesc
	ch <- webhookResendsDesc
	ch <- webhookRetriesDesc
	ch <- webhookOutcomesHeldDesc
	ch <- webhookOutcomesHeldLimitDesc
	ch <- webhookOutcomesDroppedDesc
	ch <- batchEventsDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for _, d := range statDescs {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(d.get(st)))
	}
	if c.s.tracker != nil {
		active, refused := c.s.active.counts()
		ch <- prometheus.MustNewConstMetric(activeBatchesDesc, prometheus.GaugeValue, float64(active))
		ch <- prometheus.MustNewConstMetric(activeBatchesLimitDesc, prometheus.GaugeValue, float64(c.s.o.MaxActiveBatches))
		ch <- prometheus.MustNewConstMetric(batchesRefusedDesc, prometheus.CounterValue, float64(refused))
		c.collectLines(ch)
	}
	ch <- prometheus.MustNewConstMetric(fileListingsDesc, prometheus.GaugeValue, float64(c.s.listings.running.Load()))
	ch <- prometheus.MustNewConstMetric(fileListingsLimitDesc, prometheus.GaugeValue, MaxFileListings)
	ch <- prometheus.MustNewConstMetric(fileListingsRefusedDesc, prometheus.CounterValue, float64(c.s.listings.refused.Load()))
	ch <- prometheus.MustNewConstMetric(fileClaimWaitsDesc, prometheus.CounterValue, float64(c.s.stats.fileClaimWaits.Load()))
	ch <- prometheus.MustNewConstMetric(fileClaimTakeoversDesc, prometheus.CounterValue, float64(c.s.stats.fileClaimTakeovers.Load()))
	ch <- prometheus.MustNewConstMetric(orphanChunksPurgedDesc, prometheus.CounterValue, float64(c.s.stats.orphanChunksPurged.Load()))
	ch <- prometheus.MustNewConstMetric(expiredFilesDeletedDesc, prometheus.CounterValue, float64(c.s.stats.expiredFilesDeleted.Load()))
	queued, dests := c.s.hooks.queueDepth()
	ch <- prometheus.MustNewConstMetric(webhooksQueuedDesc, prometheus.GaugeValue, float64(queued))
	ch <- prometheus.MustNewConstMetric(webhooksQueuedLimitDesc, prometheus.GaugeValue, webhookMaxQueued)
	ch <- prometheus.MustNewConstMetric(webhookDestinationsDesc, prometheus.GaugeValue, float64(dests))
	for r, label := range dropReasonLabels {
		ch <- prometheus.MustNewConstMetric(webhooksDroppedDesc, prometheus.CounterValue, float64(c.s.hooks.dropped[r].Load()), label)
	}
	for o, label := range resendOutcomeLabels {
		ch <- prometheus.MustNewConstMetric(webhookResendsDesc, prometheus.CounterValue, float64(c.s.hooks.resends[o].Load()), label)
	}
	ch <- prometheus.MustNewConstMetric(webhookRetriesDesc, prometheus.CounterValue, float64(c.s.hooks.retries.Load()))
	ch <- prometheus.MustNewConstMetric(webhookOutcomesHeldDesc, prometheus.GaugeValue, float64(c.s.hooks.heldOutcomes()))
	ch <- prometheus.MustNewConstMetric(webhookOutcomesHeldLimitDesc, prometheus.GaugeValue, float64(c.s.hooks.maxHeld))
	ch <- prometheus.MustNewConstMetric(webhookOutcomesDroppedDesc, prometheus.CounterValue, float64(c.s.hooks.heldDropped.Load()))
	for o, label := range eventOutcomeLabels {
		ch <- prometheus.MustNewConstMetric(batchEventsDesc, prometheus.CounterValue, float64(c.s.hooks.events[o].Load()), label)
	}
	ch <- prometheus.MustNewConstMetric(classesDownDesc, prometheus.GaugeValue, float64(c.s.classesDown.count()))
	ch <- prometheus.MustNewConstMetric(workersPausedDesc, prometheus.GaugeValue, float64(c.s.stats.workersPaused.Load()))
	ch <- prometheus.MustNewConstMetric(storePausesDesc, prometheus.CounterValue, float64(c.s.stats.storePauses.Load()))
	ch <- prometheus.MustNewConstMetric(startsRefusedDesc, prometheus.CounterValue, float64(c.s.stats.startsRefused.Load()))
	ch <- prometheus.MustNewConstMetric(requeuesRefusedDesc, prometheus.CounterValue, float64(c.s.stats.requeuesRefused.Load()))
	ch <- prometheus.MustNewConstMetric(resultsRefusedDesc, prometheus.CounterValue, float64(c.s.stats.resultsRefused.Load()))
	ch <- prometheus.MustNewConstMetric(heldResultsDesc, prometheus.GaugeValue, float64(c.s.held.n.Load()))
	ch <- prometheus.MustNewConstMetric(heldResultBytesDesc, prometheus.GaugeValue, float64(c.s.held.bytes.Load()))
	ch <- prometheus.MustNewConstMetric(heldResultBytesLimitDesc, prometheus.GaugeValue, float64(max(c.s.held.limit, 0)))
	ch <- prometheus.MustNewConstMetric(resultsDroppedDesc, prometheus.CounterValue, float64(c.s.held.dropped.Load()))
	ch <- prometheus.MustNewConstMetric(storeLimitDesc, prometheus.GaugeValue, float64(c.s.o.MaxStoreBytes))
	ch <- prometheus.MustNewConstMetric(storeRefusedDesc, prometheus.CounterValue, float64(c.s.stats.storeRefusedBudget.Load()), "budget")
	ch <- prometheus.MustNewConstMetric(storeRefusedDesc, prometheus.CounterValue, float64(c.s.stats.storeRefusedServer.Load()), "server")
	ch <- prometheus.MustNewConstMetric(storeRefusedDesc, prometheus.CounterValue, float64(c.s.stats.storeRefusedReserved.Load()), "reserved")
	ch <- prometheus.MustNewConstMetric(storeReservedDesc, prometheus.GaugeValue, float64(c.s.reserved.sum()))
	ch <- prometheus.MustNewConstMetric(batchUpdatesRefusedDesc, prometheus.CounterValue, float64(c.s.stats.batchUpdatesRefused.Load()))
	ch <- prometheus.MustNewConstMetric(classesLostDesc, prometheus.CounterValue, float64(c.s.stats.classesLost.Load()))
	ch <- prometheus.MustNewConstMetric(storeRefusedDesc, prometheus.CounterValue, float64(c.s.stats.storeRefusedFailing.Load()), "disk")
	if e := c.s.o.Embedded; e != nil {
		failing := 0.0
		if e.StoreFault() != nil {
			failing = 1
		}
		ch <- prometheus.MustNewConstMetric(storeFailingDesc, prometheus.GaugeValue, failing)
		ch <- prometheus.MustNewConstMetric(storeWriteFailuresDesc, prometheus.CounterValue, float64(e.StoreWriteFailures()))
		ch <- prometheus.MustNewConstMetric(storeRecoveriesDesc, prometheus.CounterValue, float64(e.StoreRecoveries()))
		ch <- prometheus.MustNewConstMetric(storeRestartFailuresDesc, prometheus.CounterValue, float64(e.StoreRestartFailures()))
		damage := e.StoreDamage()
		var lost uint64
		for _, d := range damage {
			lost += d.LostMsgs
		}
		ch <- prometheus.MustNewConstMetric(storeDamagedDesc, prometheus.GaugeValue, float64(len(damage)))
		ch <- prometheus.MustNewConstMetric(storeLostDesc, prometheus.GaugeValue, float64(lost))
	}
	// Round trips, bounded: a scrape must not hang on an unreachable
	// NATS (the gauges are then left out of this scrape).
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if u, err := c.s.StoreUsage(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(storeBytesDesc, prometheus.GaugeValue, float64(u.Bytes))
	}
	if stream, err := c.s.js.Stream(ctx, workStream); err == nil {
		if info, err := stream.Info(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(info.State.Msgs))
		}
	}
}
