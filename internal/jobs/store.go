package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/telemetry"
)

// Names of the JetStream assets. One NATS account holds one Sluice queue.
const (
	workStream   = "SLUICE_JOBS"
	workSubjects = "sluice.jobs." // + class
	deadStream   = "SLUICE_DEAD"
	deadSubjects = "sluice.dead." // + class
	jobsBucket   = "sluice_jobs"
	bodiesBucket = "sluice_bodies"
	idemBucket   = "sluice_idem"
	batchBucket  = "sluice_batches"
	filesBucket  = "sluice_files"
)

// defaultClasses are the classes a worker takes jobs from when
// WorkerOptions.Classes is empty, in the order it prefers them; the first
// is also a Spec's default class.
func defaultClasses() []string { return []string{"interactive", "batch"} }

// Options configures a Store. Zero values take the documented defaults.
type Options struct {
	// RequestTimeout bounds one JetStream call that has no deadline of its
	// own, default DefaultRequestTimeout. Calls made while the connection
	// is down are refused at once (checkOpen), not after it.
	RequestTimeout time.Duration
	// PublishWindow bounds the asynchronous publishes awaiting their
	// acknowledgement across the Store (batch creations write a chunk of
	// publishChunk at a time each), default nats.go's 4,000. A publish
	// finding it full waits 200 ms for room, then fails with ErrBusy.
	PublishWindow int
	// URL is the NATS server, e.g. (*Embedded).ClientURL().
	URL string
	// Embedded, when set, is the in-process server at URL: the Store
	// connects to it through a pipe, not a socket, so neither a loaded
	// machine (nats.go's 2 s connect timeout) nor a full port range can
	// fail the gateway's own connection. Workers in other processes still
	// use URL.
	Embedded *Embedded
	// Name is the NATS connection name, default "sluice-jobs".
	Name string
	// Retention is how long job records, batches and files are kept after
	// their last change, default 7 days.
	Retention time.Duration
	// Replicas of every stream, bucket and object store, default
	// DefaultReplicas (more only on a JetStream cluster).
	Replicas int
	// MaxFileBytes bounds an uploaded file, default 200 MiB.
	MaxFileBytes int64
	// MaxStoreBytes bounds the bytes the queue keeps in JetStream (jobs,
	// bodies, results, batches, files), 0 for no bound. New jobs, batches
	// and files are refused with ErrStoreFull once the store holds 90% of
	// it; the rest is headroom for the results of accepted jobs. Checked
	// against the NATS account's usage before each new one; an embedded
	// server also enforces it (EmbeddedOptions.MaxStoreBytes).
	MaxStoreBytes int64
	// MaxAttempts is how many executions ending in an error a job gets
	// before it is dead-lettered, default 5. Busy answers (429/503) do not
	// count.
	MaxAttempts int
	// AckWait is how long JetStream waits for a sign of life from the
	// worker holding a message before redelivering it, default
	// DefaultAckWait. Workers send one (msg.InProgress, as NATS advises for
	// long work) every AckWait/4 while a job waits or runs, so a job may
	// run far longer than AckWait; AckWait only bounds how soon a message
	// no one works on comes back: a dead worker's, or one the server
	// handed out as it shut down, lost with the connection.
	AckWait time.Duration
	// RetryDelay is the wait before a job that ended in an error runs
	// again; it doubles per attempt up to MaxRetryDelay. Defaults 2s, 1m.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// BusyDelay is the wait before a job that got 429/503 (no room) runs
	// again, growing with consecutive deliveries to 5x. Default 1s.
	BusyDelay time.Duration
	// TrackInterval is how often batch trackers refresh counts and check
	// expiry while batches are active, default 1s. With none active, a
	// tracker waits for one to start (it watches the active-batch index)
	// and rescans only every 60 TrackIntervals.
	TrackInterval time.Duration
	// CreateTimeout is how long a batch may stay "validating" (being
	// enqueued) before the tracker decides its creator died and fails
	// it, default 10 minutes.
	CreateTimeout time.Duration
	// NoTracker leaves batch tracking to other processes (a worker-only
	// process). Some process must track, or batches never finish.
	NoTracker bool
	// Now is the clock for every recorded timestamp and expiry, default
	// time.Now.
	Now Clock
	// Rand is the source of ids and of the jitter of retries (store
	// pauses, webhook attempts and their schedule), default crypto/rand.
	Rand io.Reader
	// Logger, default slog.Default().
	Logger *slog.Logger
	// WebhookSecret signs webhooks (webhook-signature, Standard Webhooks;
	// and X-Sluice-Signature). Without it no webhook is sent: receivers
	// must be able to tell ours from forgeries.
	WebhookSecret []byte
	// AllowPrivateWebhooks lets webhooks reach loopback, private,
	// link-local and other internal addresses (checked on the address
	// dialled, after DNS). Off by default.
	AllowPrivateWebhooks bool
	// BatchWebhooks are the endpoints a batch's end is sent to as an
	// OpenAI webhook event (batch.completed, batch.failed,
	// batch.cancelled, batch.expired; batchevent.go), each only for its
	// Tenants' batches (nil: every tenant's), signed with WebhookSecret
	// and delivered at least once as job webhooks are. Empty: none is sent.
	BatchWebhooks []BatchEndpoint
	// RecordBatchWebhooks records BatchWebhooks' URLs in the jobs bucket
	// at Open and at each SetBatchWebhooks (batchhooklist.go): every
	// process sharing the queue then drops the pending events of an
	// endpoint that list no longer has. Set by gateways, not workers
	// (whose flags a reload does not change).
	RecordBatchWebhooks bool
	// WebhookTimeout bounds one round of a webhook's delivery attempts
	// (the first round's retries included), default 1 minute; later
	// rounds follow the retry schedule (webhookretry.go).
	WebhookTimeout time.Duration
	// WebhookLease is how long this process's claim on the webhooks it
	// sends outlives its last heartbeat: a process killed with webhooks
	// pending has them resent by another within it and a
	// WebhookSweepInterval (webhookresend.go). Default 30s.
	WebhookLease time.Duration
	// WebhookSweepInterval is how often the heartbeat is renewed and the
	// holder of the sweep lease looks for webhooks whose sender is gone,
	// whose scheduled retry is due, or that a queue bound kept out.
	// Default 10s; at most a third of WebhookLease.
	WebhookSweepInterval time.Duration
	// Registerer, when set, gets the queue's counters as Prometheus
	// metrics (unregistered on Close).
	Registerer prometheus.Registerer
	// MaxActiveBatches and MaxActiveBatchesPerTenant bound the batches
	// not yet finished, in all and of one tenant (every tracker keeps a
	// watch and a state per job of each), defaults
	// DefaultMaxActiveBatches and DefaultMaxActiveBatchesPerTenant: past
	// either, CreateBatch answers ErrTooManyBatches.
	MaxActiveBatches          int
	MaxActiveBatchesPerTenant int
	// MaxHeldResultBytes bounds the finished jobs' results this process's
	// workers hold in memory while the store refuses to record them (at
	// its hard bound), default DefaultMaxHeldResultBytes; negative: none
	// held. A result past it is dropped and its job runs again after
	// AckWait.
	MaxHeldResultBytes int64
	// FileReadIdle bounds the wait for each chunk of a file's content
	// while it is read (a download, a batch's input), default
	// DefaultFileReadIdle. Nothing bounds the whole read: a large file
	// read by a slow client takes as long as the client does.
	FileReadIdle time.Duration
	// FileWriteLease is how long a tracker's claim on a batch's result
	// files holds without being extended (the writer extends it as it
	// writes): a writer that dies mid-write leaves the batch to another
	// tracker after it. Default DefaultFileWriteLease.
	FileWriteLease time.Duration
	// OrphanChunkAge is how old the newest chunk of a file write that
	// never committed must be before the tracker purges its chunks
	// (chunksweep.go). Default DefaultOrphanChunkAge.
	OrphanChunkAge time.Duration

	// inProcess, in tests, replaces Embedded's in-process connections
	// (a proxy that can stop forwarding: storeclose_test.go).
	inProcess nats.InProcessConnProvider

	// batchWatched, in tests, is told of each watch a batch's actor makes
	// of its job records (the batch's id): a test waits on the watch
	// made again on a new connection (watchesOnConn, restartwatch_test.go).
	batchWatched func(batchID string)

	// beforeFileCommit, in tests, runs after a result file's last byte and
	// before the claim is confirmed and the file committed.
	beforeFileCommit func(ctx context.Context)
}

// DefaultAckWait is AckWait's default: half NATS' own 30 s default. It
// bounds how long a lost message waits before it runs again (it was a
// minute); heartbeats every 3.75 s keep a running job's message, and a
// worker holds a job through a NATS outage of up to 7.5 s (AckWait/2)
// before it gives the message up.
const DefaultAckWait = 15 * time.Second

// DefaultReplicas is Options.Replicas when unset (queue.replicas 0 or
// unset): one copy, all a single JetStream server can keep.
const DefaultReplicas = 1

func (o *Options) defaults() {
	if o.MaxActiveBatches <= 0 {
		o.MaxActiveBatches = DefaultMaxActiveBatches
	}
	if o.MaxActiveBatchesPerTenant <= 0 {
		o.MaxActiveBatchesPerTenant = DefaultMaxActiveBatchesPerTenant
	}
	if o.MaxHeldResultBytes == 0 {
		o.MaxHeldResultBytes = DefaultMaxHeldResultBytes
	}
	if o.Name == "" {
		o.Name = "sluice-jobs"
	}
	if o.Retention <= 0 {
		o.Retention = 7 * 24 * time.Hour
	}
	if o.Replicas <= 0 {
		o.Replicas = DefaultReplicas
	}
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = 200 << 20
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 2 * time.Second
	}
	if o.MaxRetryDelay < o.RetryDelay {
		o.MaxRetryDelay = max(time.Minute, o.RetryDelay)
	}
	if o.BusyDelay <= 0 {
		o.BusyDelay = time.Second
	}
	if o.TrackInterval <= 0 {
		o.TrackInterval = time.Second
	}
	if o.CreateTimeout <= 0 {
		o.CreateTimeout = 10 * time.Minute
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.FileReadIdle <= 0 {
		o.FileReadIdle = DefaultFileReadIdle
	}
	if o.OrphanChunkAge <= 0 {
		o.OrphanChunkAge = DefaultOrphanChunkAge
	}
	if o.FileWriteLease <= 0 {
		o.FileWriteLease = DefaultFileWriteLease
	}
	if o.WebhookTimeout <= 0 {
		o.WebhookTimeout = time.Minute
	}
	if o.WebhookLease <= 0 {
		o.WebhookLease = DefaultWebhookLease
	}
	if o.WebhookSweepInterval <= 0 {
		o.WebhookSweepInterval = DefaultWebhookSweepInterval
	}
	o.WebhookSweepInterval = min(o.WebhookSweepInterval, o.WebhookLease/3)
}

// Store is the JetStream-backed job queue. It implements Service; workers
// run with RunWorker. Close releases it.
type Store struct {
	o     Options
	log   *slog.Logger
	owner string // names this process in claims (fileclaim.go)
	// batchHooks are the batch-event endpoints in use: Options.BatchWebhooks
	// at Open, then each SetBatchWebhooks' (a config reload).
	batchHooks atomic.Pointer[[]BatchEndpoint]

	nc       *nats.Conn
	ncClosed chan struct{} // closed once nc is, after Drain finished
	conn     *connEpoch    // ends when nc drops: what in-flight calls are bound to (onConn)
	js       jetstream.JetStream
	jobs     jetstream.KeyValue // job records, without bodies
	bodies   jetstream.KeyValue // request bodies, same keys as jobs
	idem     jetstream.KeyValue // idempotency key hash -> job id
	listings listingGate        // ListFiles running (MaxFileListings)
	batch    jetstream.KeyValue // batch records and the active-batch index
	files    jetstream.ObjectStore

	stats       counters
	metrics     *collector
	hooks       *webhooks
	tracker     *tracker
	batchStream streamHandle  // the batch bucket's stream (activeIndex, purgeIndexMarker)
	idemStream  streamHandle  // the idem bucket's stream (readClaim)
	active      activeBatches // what CreateBatch's bounds count; kept by the tracker
	lines       batchLines    // the tracker's lines by state, for the metrics (batchlines.go)
	usage       usageCache    // the store's usage for admission (storecap.go)
	reserved    reservations  // bytes the active batches are expected to write (storereserve.go)
	held        heldResults   // results workers hold on a full store (heldresult.go)
	classesDown classesDown   // classes whose consumer a worker cannot create (classretry.go)
	randMu      sync.Mutex
	ctx         context.Context // ends on Close: stops everything below
	cancel      context.CancelFunc
	mu          sync.Mutex // guards closed and wg.Add
	closed      bool
	wg          sync.WaitGroup // the Store's goroutines and running RunWorker calls
	closeErr    error          // set by close before closeDone is closed
	closeDone   chan struct{}  // closed once close returned (storeclose.go)
	once        sync.Once
	idemWait    time.Duration // idemWait; tests set their own
	// leaderless, when set (tests), is called each time a submit's write
	// found no stream leader, before it waits to send it again.
	leaderless func()
	// claimed, when set (tests), is called by a submit with an
	// idempotency key once it holds the key's claim for job id, before it
	// writes anything of the job.
	claimed func(id string)
	// enqueued, when set (tests), is called by a submit once it has
	// published job id's message, before it writes the job's record.
	enqueued func(id string)
}

var _ Service = (*Store)(nil)

// Open connects to NATS and creates (or updates) the queue's stream,
// buckets and object store. Unless o.NoTracker, it starts the batch
// tracker; Close stops it.
func Open(ctx context.Context, o Options) (*Store, error) {
	o.defaults()
	if o.URL == "" {
		return nil, errors.New("jobs: Options.URL is required")
	}
	if err := CheckBatchEndpoints(o.BatchWebhooks, o.AllowPrivateWebhooks); err != nil {
		return nil, err
	}
	// Reconnect forever: the queue outlives NATS restarts, and callers see
	// errors (not a dead Store) while the server is away.
	ncClosed := make(chan struct{})
	conn := newConnEpoch()
	// No reconnect buffer: while NATS is away a publish fails at once
	// (the client gets a 503) rather than being replayed later for a
	// request that was already refused. Pings find a silent peer in
	// seconds rather than the default minutes. A drop ends the calls
	// waiting on a reply at once (connEpoch).
	opts := []nats.Option{nats.Name(o.Name), nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait), nats.ReconnectBufSize(-1),
		nats.PingInterval(5 * time.Second), nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { conn.lost() }),
		nats.ReconnectHandler(func(*nats.Conn) { conn.back() }),
		nats.ClosedHandler(func(*nats.Conn) { conn.lost(); close(ncClosed) })}
	switch {
	case o.inProcess != nil:
		opts = append(opts, nats.InProcessServer(o.inProcess))
	case o.Embedded != nil:
		// Through Embedded, not its server: a disk fault's recovery
		// replaces the server, and reconnects reach the new one.
		opts = append(opts, nats.InProcessServer(o.Embedded))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		// The password stays in the config: the URL is shown redacted, and
		// a parse failure's own text (which quotes the URL) is replaced.
		return nil, fmt.Errorf("jobs: connecting to %s: %w", telemetry.RedactURLs(o.URL), telemetry.RedactURLError(err, o.URL))
	}
	s := &Store{o: o, log: o.Logger.With("component", "jobs"), nc: nc, ncClosed: ncClosed, conn: conn, idemWait: idemWait}
	hooks := slices.Clone(o.BatchWebhooks)
	s.batchHooks.Store(&hooks)
	s.held.limit = o.MaxHeldResultBytes
	if s.owner, err = s.newID(o.Name+"-", 8); err != nil {
		nc.Close()
		return nil, err
	}
	if err := s.setup(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	// Once its streams exist: a stream nats-server skipped is recreated
	// by setup, and what each holds is compared with the marks.
	o.Embedded.AuditStore()
	s.hooks = newWebhooks(s) // before the collector, which reads its queues
	if o.Registerer != nil {
		s.metrics = &collector{s: s}
		if err := o.Registerer.Register(s.metrics); err != nil {
			nc.Close()
			return nil, fmt.Errorf("jobs: registering metrics: %w", err)
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.noteBatchWebhooks(ctx) // before the tracker sends an event
	if !o.NoTracker {
		s.tracker = newTracker(s)
		s.wg.Go(func() { s.tracker.run(s.ctx) })
	}
	s.hooks.startBeats(ctx)
	return s, nil
}

// DefaultRequestTimeout is Options.RequestTimeout's default: JetStream's own.
const DefaultRequestTimeout = 5 * time.Second

func (s *Store) setup(ctx context.Context) error {
	jsOpts := []jetstream.JetStreamOpt{jetstream.WithDefaultTimeout(s.o.RequestTimeout)}
	if s.o.PublishWindow > 0 {
		jsOpts = append(jsOpts, jetstream.WithPublishAsyncMaxPending(s.o.PublishWindow))
	}
	js, err := jetstream.New(s.nc, jsOpts...)
	if err != nil {
		return fmt.Errorf("jobs: jetstream: %w", err)
	}
	s.js = js
	o := s.o
	// Each call is bounded and retried when unanswered (provision.go):
	// gateways starting together race to create the same objects.
	stream := func(cfg jetstream.StreamConfig) error {
		err := provision(ctx, o.RequestTimeout, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateStream(ctx, cfg)
			return err
		})
		if err != nil {
			return fmt.Errorf("jobs: creating stream %s: %w", cfg.Name, err)
		}
		return nil
	}
	// Work queue retention: a message is deleted once acked, so the stream
	// holds exactly the backlog and needs no cleanup. The price is that
	// consumers may not overlap, hence one durable consumer per class
	// (see consumer). Records, not messages, are the source of truth:
	// the message carries only the job key.
	if err := stream(jetstream.StreamConfig{
		Name:       workStream,
		Subjects:   []string{workSubjects + ">"},
		Retention:  jetstream.WorkQueuePolicy,
		MaxAge:     o.Retention,
		Replicas:   o.Replicas,
		Duplicates: 2 * time.Minute, // Nats-Msg-Id = job key: a retried publish does not enqueue twice
	}); err != nil {
		return err
	}
	// Dead letters: the record stays in the jobs bucket (failed,
	// max_attempts); this stream is the operator's list of them.
	if err := stream(jetstream.StreamConfig{
		Name:     deadStream,
		Subjects: []string{deadSubjects + ">"},
		MaxAge:   o.Retention,
		Replicas: o.Replicas,
	}); err != nil {
		return err
	}
	kv := func(name, desc string) (b jetstream.KeyValue, err error) {
		err = provision(ctx, o.RequestTimeout, func(ctx context.Context) error {
			b, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket: name, Description: desc, TTL: o.Retention, Replicas: o.Replicas,
			})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("jobs: creating bucket %s: %w", name, err)
		}
		return b, nil
	}
	if s.jobs, err = kv(jobsBucket, "Sluice job records: j.<id>, b.<batch>.<index>"); err != nil {
		return err
	}
	if s.bodies, err = kv(bodiesBucket, "Sluice request bodies, keyed as the job records"); err != nil {
		return err
	}
	if s.idem, err = kv(idemBucket, "Sluice idempotency keys -> job id"); err != nil {
		return err
	}
	if s.batch, err = kv(batchBucket, "Sluice batches: t.<tenant hash>.<id>; a.<id> while active"); err != nil {
		return err
	}
	if err := provision(ctx, o.RequestTimeout, func(ctx context.Context) (err error) {
		s.files, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: filesBucket, Description: "Sluice files", TTL: o.Retention, Replicas: o.Replicas,
		})
		return err
	}); err != nil {
		return fmt.Errorf("jobs: creating object store %s: %w", filesBucket, err)
	}
	return nil
}

// Close stops the tracker, webhook senders and running workers (each
// RunWorker returns after its grace), then closes the NATS connection.
// Webhooks not yet delivered stay pending on their jobs and are resent
// by the next sweep of a live process (webhookresend.go): Close deletes
// this process's heartbeat, so that sweep need not wait for its lease.
func (s *Store) Close() error { return s.CloseWithin(context.Background()) }

// enter registers one more goroutine the Store must wait for, or reports
// that the Store is closed.
func (s *Store) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.wg.Add(1)
	return nil
}

// checkOpen refuses a call at once when the Store is closed or NATS is
// away, so clients get a 503 instead of waiting out JetStream's timeouts;
// a call already waiting when NATS goes away is ended by onConn's binding.
func (s *Store) checkOpen() error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	return s.Available()
}

// Available reports ErrUnavailable while the NATS connection is down
// (reconnecting), nil when it is up and the Store has taken the
// reconnect in: nats.go says CONNECTED before its reconnect handler has
// started the connection's new epoch (connEpoch), and until then every
// call is refused (onConn). Saying nil in that moment made the batch
// API's early check pass for a call then refused, and a caller that
// waited for Available to submit got the 503 it had waited out.
func (s *Store) Available() error {
	if st := s.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: NATS connection %s", ErrUnavailable, st)
	}
	if epoch := s.conn.current(); epoch.Err() != nil {
		return fmt.Errorf("%w: NATS connection back, its reconnect not yet taken in", ErrUnavailable)
	}
	return nil
}

// IsUnavailable reports an error that means "NATS is away", not a fault
// of the request: the caller answers 503 and the client retries.
func IsUnavailable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrReconnectBufExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, context.DeadlineExceeded)
}

func (s *Store) now() time.Time { return s.o.Now() }

// newID is prefix + n random bytes in hex.
func (s *Store) newID(prefix string, n int) (string, error) {
	b := make([]byte, n)
	s.randMu.Lock()
	_, err := io.ReadFull(s.o.Rand, b)
	s.randMu.Unlock()
	if err != nil {
		return "", fmt.Errorf("jobs: reading random id: %w", err)
	}
	return prefix + hex.EncodeToString(b), nil
}
