package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/batchapi"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/netguard"
)

// jobQueue is the durable queue behind async requests and the Batch API:
// a NATS server embedded in this process (or an external one), the store
// on it, and the HTTP layer. Built once per process; config reloads do not
// touch it, but for its batch-event endpoints (reloadBatchWebhooks).
type jobQueue struct {
	cfg config.Queue
	emb *jobs.Embedded // nil with an external NATS
	// unlock releases the data directory's lock (lockDataDir), after the
	// embedded server has stopped; nil with an external NATS.
	unlock func()
	// url is the NATS URL the store and separate workers use.
	url   string
	store *jobs.Store
	api   *batchapi.Handler
	log   *slog.Logger

	// stopWorker ends the workers' taking of jobs; cut, closed once by
	// cutJobs, cancels the running ones, which go back to the queue.
	stopWorker context.CancelFunc
	cut        chan struct{}
	cutOnce    sync.Once
	workerWG   sync.WaitGroup
	closeOnce  sync.Once
	closeDone  chan struct{} // closed once close returned
	// abandoned is set once a closeWithin gave up: later calls return at once.
	abandoned atomic.Bool
}

// uploadMemory is the gateway's request body budget and its metrics,
// which the Batch API's uploads draw from and are counted in.
type uploadMemory struct {
	budget  *netguard.Budget
	metrics *netguard.BodyMetrics
}

// openQueue starts the embedded server when no URL is configured and opens
// the store. models reports whether a model is served (batch validation);
// now is the app's clock, for the embedded store's fault times; mem is
// what uploads' line buffers are charged to.
func openQueue(c config.Queue, reg prometheus.Registerer, log *slog.Logger, models func(string) bool, now func() time.Time, mem uploadMemory) (*jobQueue, error) {
	q := &jobQueue{cfg: c, log: log, cut: make(chan struct{})}
	url, storeLimit := c.URL, int64(c.MaxStoreBytes)
	if url == "" {
		dir, key := c.DataDir, "queue.data_dir (or --data-dir)"
		if dir == "" {
			dir, key = config.DefaultDataDir(), "the default data directory (queue.data_dir and --data-dir unset)"
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("queue.data_dir (or --data-dir): %w", err)
		}
		unlock, err := lockDataDir(dir, key)
		if err != nil {
			return nil, err
		}
		host, port := config.DefaultQueueListenHost, -1
		if c.Listen != "" {
			h, p, err := net.SplitHostPort(c.Listen)
			if err != nil {
				return nil, fmt.Errorf("queue.listen: %w", err)
			}
			if host = h; host == "" {
				host = config.DefaultQueueListenHost
			}
			if port, err = strconv.Atoi(p); err != nil {
				return nil, fmt.Errorf("queue.listen: bad port %q", p)
			}
		}
		storeDir := filepath.Join(dir, "jetstream")
		storeLimit = embeddedStoreLimit(storeLimit, dir, storeDir, log)
		emb, err := jobs.StartEmbedded(jobs.EmbeddedOptions{Dir: storeDir, Host: host, Port: port, Logger: log,
			MaxStoreBytes: storeLimit, Now: now})
		if err != nil {
			unlock()
			return nil, fmt.Errorf("queue: embedded NATS in %s: %w", dir, err)
		}
		q.emb, q.unlock, url = emb, unlock, emb.ClientURL()
		log.Info("job queue: embedded NATS JetStream", "data_dir", dir, "url", url,
			"worker", "sluice worker --admin <admin address> --token <admin.worker_token, else admin.token> (it asks the gateway for this URL)")
	}
	q.url = url
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := jobs.Open(ctx, jobs.Options{
		URL: url, Embedded: q.emb, Replicas: c.Replicas, Retention: c.Retention.D(), MaxFileBytes: int64(c.MaxFileBytes),
		MaxStoreBytes: storeLimit, MaxAttempts: c.MaxAttempts, Logger: log, WebhookSecret: []byte(c.WebhookSecret), Registerer: reg,
		AllowPrivateWebhooks: c.AllowPrivateWebhooks, BatchWebhooks: batchEndpoints(c.BatchWebhooks), RecordBatchWebhooks: true,
		RequestTimeout: c.RequestTimeout.D(), FileReadIdle: c.FileReadIdle.D(), OrphanChunkAge: c.OrphanChunkAge.D(),
		MaxActiveBatches: c.MaxActiveBatches, MaxActiveBatchesPerTenant: c.MaxActiveBatchesPerTenant,
	})
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("queue: %w", err)
	}
	q.store = store
	q.api = batchapi.New(batchapi.Options{Service: store, MaxFileBytes: int64(c.MaxFileBytes), Models: models, Logger: log,
		Registerer: reg, BodyMemory: mem.budget, BodyMetrics: mem.metrics, MaxSpoolBytes: int64(c.MaxUploadSpoolBytes)})
	return q, nil
}

// queueDataDir is the embedded queue's data directory: queue.data_dir
// (or --data-dir), else the default one.
func queueDataDir(c config.Queue) string {
	if c.DataDir != "" {
		return c.DataDir
	}
	return config.DefaultDataDir()
}

// startWorker runs this gateway's workers: they take jobs while the pool
// has spare capacity and run them through the gateway. Once stopped
// (stopTaking) they take none; the running jobs have no bound of their
// own but cutJobs, which a shutdown calls at the end of its drain.
func (q *jobQueue) startWorker(gw *gateway.Gateway) {
	if q.cfg.WorkerDisabled || q.cfg.Workers == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	q.stopWorker = cancel
	q.workerWG.Add(1)
	go func() {
		defer q.workerWG.Done()
		err := q.store.RunWorker(ctx, jobs.WorkerOptions{Concurrency: q.cfg.Workers, Executor: gw.JobExecutor(), Gate: gw.JobGate(), Cut: q.cut})
		if err != nil && !errors.Is(err, context.Canceled) {
			q.log.Error("job worker stopped", "error", err.Error())
		}
	}()
}

// stopTaking ends the workers' taking of jobs, at once; the running ones
// go on. The caller holds the App's jobsMu (startWorker runs under it).
func (q *jobQueue) stopTaking() {
	if q.stopWorker != nil {
		q.stopWorker()
	}
}

// cutJobs cancels the running jobs, which go back to the queue without
// their attempt counted. Safe to call more than once.
func (q *jobQueue) cutJobs() { q.cutOnce.Do(func() { close(q.cut) }) }

// stopWorkers stops the workers: running jobs get jobStopGrace to finish
// (none left after a shutdown's drain, which waited for them), then are
// cut and handed back to the queue.
func (q *jobQueue) stopWorkers() {
	q.stopTaking()
	t := time.AfterFunc(jobStopGrace, q.cutJobs)
	defer t.Stop()
	q.workerWG.Wait()
}

// queueStopBound bounds the job queue's stop at the end of a shutdown
// (closeQueue): the workers' last acks, the store's drain and the
// embedded server's stop take milliseconds, but a NATS that answers
// nothing keeps them waiting for good: a damaged KV_sluice_jobs block
// makes nats-server v2.15.2 loop under the stream's lock, and SIGTERM,
// twice, did not end the gateway in 45 s (docs/RELIABILITY.md, kvwedge).
// Past it, and what the shutdown's drain left of its own bound
// (queueCloseBound), the process exits without the queue, as after a
// crash.
const queueStopBound = 5 * time.Second

// Close stops workers, the store and the embedded server, however long
// that takes.
func (q *jobQueue) Close() { q.closeWithin(context.Background()) }

// closeWithin stops workers, the store and the embedded server, waiting at
// most until ctx ends: then it returns ctx's cause and the stop goes on in
// the background (it ends if NATS lets go, or with the process); the data
// directory's lock is then released by the process's exit. Later calls
// wait for the same stop, or return at once once one gave up.
func (q *jobQueue) closeWithin(ctx context.Context) error {
	q.closeOnce.Do(func() {
		q.closeDone = make(chan struct{})
		go func() {
			defer close(q.closeDone)
			q.close(ctx)
		}()
	})
	if q.abandoned.Load() {
		select {
		case <-q.closeDone:
			return nil
		default:
			return errQueueAbandoned
		}
	}
	select {
	case <-q.closeDone:
		return nil
	case <-ctx.Done():
		q.abandoned.Store(true)
		return context.Cause(ctx)
	}
}

// errQueueAbandoned is a closeWithin's answer after one gave up.
var errQueueAbandoned = errors.New("the job queue's stop was given up already")

func (q *jobQueue) close(ctx context.Context) {
	q.stopWorkers()
	if q.store != nil {
		if err := q.store.CloseWithin(ctx); errors.Is(err, jobs.ErrCloseAbandoned) {
			return // the server is as wedged as the connection: its stop would wait too
		}
	}
	if q.emb != nil {
		q.emb.Shutdown()
		q.emb.WaitForShutdown()
	}
	if q.unlock != nil {
		q.unlock()
	}
}

// dataDirLockFile is the lock file, in the data directory, that the
// embedded queue's owner holds.
const dataDirLockFile = "jetstream.lock"

// lockDataDir takes dir's lock for the embedded queue's store: two NATS
// servers on one JetStream store corrupt each other's streams, and
// nothing in NATS refuses the second (measured: a second gateway on the
// same --data-dir started and served). As nginx's pid file or Postgres's
// postmaster.pid, the second process is refused at start instead, the
// error naming the directory, key (where it was set) and the holder's pid.
func lockDataDir(dir, key string) (release func(), err error) {
	path := filepath.Join(dir, dataDirLockFile)
	release, err = takeLock(path)
	if errors.Is(err, errLockHeld) {
		return nil, fmt.Errorf("%s %s is in use: its lock %s is %w; one gateway per data directory: give this one its own, or share a NATS server (queue.url) between replicas", key, dir, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: lock: %w", key, dir, err)
	}
	return release, nil
}

// Attempts to reach an external NATS start after queueRetryFirst and back
// off to queueRetryMax: quick when NATS starts beside the gateway, cheap
// when it is down for long.
const (
	queueRetryFirst = time.Second
	queueRetryMax   = 30 * time.Second
)

// connectQueue keeps trying to open the job queue until it succeeds or ctx
// ends, then installs it in the gateway and starts the workers.
func (a *App) connectQueue(ctx context.Context) {
	wait := queueRetryFirst
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, queueRetryMax)
		q, err := a.jobsRetry()
		if err != nil {
			a.log.Warn("job queue still unavailable", "error", err.Error())
			continue
		}
		a.jobsMu.Lock()
		if a.closing {
			a.jobsMu.Unlock()
			q.Close()
			return
		}
		a.jobs = q
		if a.batchHooks != nil { // a reload changed them while the queue was away
			if err := q.store.SetBatchWebhooks(*a.batchHooks); err != nil {
				a.log.Error("job queue: queue.batch_webhooks of the last reload refused; sending to those of the start", "error", err.Error())
			}
		}
		a.gw.SetJobs(q.api)
		a.gw.SetJobQueue(q.store.Backlog)
		a.gw.SetJobStoreFault(q.store.DiskFault)
		a.gw.SetRevocations(q.store)
		q.startWorker(a.gw)
		a.jobsMu.Unlock()
		a.log.Info("job queue connected")
		return
	}
}

// shortenOnCut ends ctx (errQueueStopBound) at the bound a second signal
// that comes during the queue's stop, begun at start, leaves it
// (queueCloseBound: 5 s and what is left of the cut's 2 s), when that is
// sooner (CutWatch, the rule `sluice worker`'s close follows too). stop
// releases the watch.
func (a *App) shortenOnCut(ctx context.Context, start time.Time) (_ context.Context, stop func()) {
	return CutWatch{
		Cut: a.cut.ch, Left: a.queueCloseBound, Timer: a.timer, Cause: errQueueStopBound,
		Shortened: func(left time.Duration) {
			if total := a.deps.Now().Sub(start) + left; total < time.Duration(a.queueBound.Load()) {
				a.queueBound.Store(int64(total))
			}
		},
	}.Watch(ctx)
}

// closeQueue closes the job queue, if there is one, within
// queueCloseBound, and keeps a late connectQueue from installing one.
func (a *App) closeQueue() {
	a.jobsMu.Lock()
	a.closing = true
	q := a.jobs
	a.jobsMu.Unlock()
	if q == nil {
		return
	}
	bound := a.queueCloseBound()
	a.queueBound.Store(int64(bound))
	ctx, cancel := context.WithTimeoutCause(context.Background(), bound, errQueueStopBound)
	defer cancel()
	ctx, stopWatch := a.shortenOnCut(ctx, a.deps.Now())
	defer stopWatch()
	if err := q.closeWithin(ctx); errors.Is(err, errQueueStopBound) { // not when given up already
		a.queueGivenUp.Store(true)
		a.log.Error("job queue did not stop within its bound: NATS answers nothing (a wedged embedded server: see docs/DEPLOY.md \"When the store comes back damaged\"); exiting without it, as after a crash: jobs it held run again, webhooks pending are resent",
			"bound", time.Duration(a.queueBound.Load()).Round(time.Millisecond).String())
	}
}

// errQueueStopBound is closeQueue's bound's cause.
var errQueueStopBound = errors.New("queue stop bound passed")

// queueInfo says where the job queue lives: an external NATS's URL is
// known from the config even while it is unreachable; an embedded one's
// once it started (q).
func queueInfo(c config.Queue, q *jobQueue) gateway.QueueInfo {
	switch {
	case !c.Enabled:
		return gateway.QueueInfo{Mode: "off"}
	case c.URL != "":
		return gateway.QueueInfo{Mode: "external", URL: c.URL}
	case q != nil:
		return gateway.QueueInfo{Mode: "embedded", URL: q.url}
	}
	return gateway.QueueInfo{Mode: "embedded"}
}

// batchEndpoints are queue.batch_webhooks as the job store takes them.
func batchEndpoints(hooks []config.BatchWebhook) []jobs.BatchEndpoint {
	out := make([]jobs.BatchEndpoint, len(hooks))
	for i, h := range hooks {
		out[i] = jobs.BatchEndpoint{URL: h.URL, Tenants: h.Tenants}
	}
	return out
}
