package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/telemetry"
	"go.yaml.in/yaml/v4"
)

// DefaultQueueListenHost is the embedded NATS server's host when
// queue.listen is unset or names only a port: loopback, as the embedded
// server has no authentication.
const DefaultQueueListenHost = "127.0.0.1"

// DefaultDataDir is where the embedded queue (and the forecast snapshot)
// keep their data when queue.data_dir is unset: $XDG_DATA_HOME/sluice,
// else ~/.local/share/sluice (else the temporary directory's sluice).
func DefaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "sluice")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "sluice")
	}
	return filepath.Join(os.TempDir(), "sluice")
}

// Queue configures the durable job queue behind async requests
// (Prefer: respond-async) and the OpenAI Files and Batches API, on NATS
// JetStream. With no URL the NATS server runs embedded in the gateway,
// keeping its data under DataDir. Changes need a restart.
type Queue struct {
	Enabled bool `yaml:"enabled"` // default true
	// URL of an external NATS cluster with JetStream ("nats://a:4222,
	// nats://b:4222"); empty: run the server embedded.
	URL string `yaml:"url"`
	// DataDir holds the embedded server's file store; default
	// DefaultDataDir() (printed at start).
	DataDir string `yaml:"data_dir"`
	// Listen is where the embedded server accepts NATS clients (separate
	// `sluice worker` processes); default DefaultQueueListenHost on a
	// random port (also the host of a listen that names only a port).
	Listen string `yaml:"listen"`
	// Replicas of streams and buckets on an external cluster, default 1.
	Replicas int `yaml:"replicas"`
	// Workers is how many jobs this gateway runs at once, default 64 (at least the pool's slots, so a batch alone can fill it);
	// they take jobs only while the pool has spare capacity. 0 with
	// worker_disabled: true leaves jobs to separate workers.
	Workers        int  `yaml:"workers"`
	WorkerDisabled bool `yaml:"worker_disabled"`
	// Retention of job results, batches and files, default 168h (7 days).
	Retention Duration `yaml:"retention"`
	// MaxAttempts before a failing job is dead-lettered, default 5
	// (answers that only say "busy", 429/503, do not count).
	MaxAttempts int `yaml:"max_attempts"`
	// RequestTimeout bounds one call to NATS JetStream (a publish, a key
	// read or write) before it fails and the client gets a 503, default 5s
	// (JetStream's own). While the connection is known to be down, calls
	// are refused at once, without waiting for it; a call waiting when
	// the connection drops ends then (jobs.connEpoch). A submit's write
	// that finds no stream leader (a node left a cluster, the others
	// elect one) is sent again for up to this long before the 503.
	RequestTimeout Duration `yaml:"request_timeout"`
	// FileReadIdle bounds the wait for each chunk (128 KiB) of a stored
	// file while it is read (GET /v1/files/{id}/content, a batch's input),
	// default 30s; past it the read fails (a download ends short of its
	// Content-Length). Nothing bounds the whole read, and the client's own
	// pace does not count against it.
	FileReadIdle Duration `yaml:"file_read_idle"`
	// OrphanChunkAge is how old the newest chunk of a file write that
	// never committed (a process killed mid-write) must be before the
	// tracker purges its chunks, default 1h; at least 1m: a live write's
	// newest chunk is seconds old and a batch writer gives up after its
	// 30 s lease, but the age is read against the NATS server's clock.
	OrphanChunkAge Duration `yaml:"orphan_chunk_age"`
	// MaxFileBytes bounds an uploaded batch file, default 200MiB.
	MaxFileBytes ByteSize `yaml:"max_file_bytes"`
	// MaxUploadSpoolBytes bounds the temporary disk (TMPDIR) the uploads
	// being received hold, all of them, until each is stored: past it an
	// upload gets 503 upload_spool_full with Retry-After. Default 1GiB;
	// at least max_file_bytes, so one upload always fits.
	MaxUploadSpoolBytes ByteSize `yaml:"max_upload_spool_bytes"`
	// MaxStoreBytes bounds what the queue keeps on disk (job records,
	// bodies, results, batches, files), default 10GiB; 0 (set explicitly)
	// for no bound. New jobs, batches and files are refused 507
	// storage_full from 90% of it; the rest is for accepted jobs'
	// results. The embedded server enforces it too (JetStream max store).
	MaxStoreBytes ByteSize `yaml:"max_store_bytes"`
	// MaxActiveBatches and MaxActiveBatchesPerTenant bound the batches not
	// finished yet, in all and of one tenant (defaults 128 and 16): every
	// gateway tracks each active batch with a watch and a state per job.
	// Past either, POST /v1/batches is a 429 too_many_active_batches.
	MaxActiveBatches          int `yaml:"max_active_batches"`
	MaxActiveBatchesPerTenant int `yaml:"max_active_batches_per_tenant"`
	// WebhookSecret signs webhooks (Standard Webhooks webhook-signature,
	// and X-Sluice-Signature: t=..,v1=.. HMAC-SHA256 over "t.body"); a
	// "whsec_<base64>" secret is used base64-decoded. ${VAR} expanded.
	// Empty: webhooks are refused at submit (none is sent unsigned).
	WebhookSecret string `yaml:"webhook_secret"`
	// AllowPrivateWebhooks lets webhooks target loopback, private,
	// link-local (cloud metadata) and other internal addresses (off: such
	// URLs are refused at submit and, after DNS, at dial time, so clients
	// cannot make the gateway call internal services).
	AllowPrivateWebhooks bool `yaml:"allow_private_webhooks"`
	// BatchWebhooks are endpoints that a batch's end is POSTed to as an
	// OpenAI webhook event,
	// {"object":"event","type":"batch.completed","data":{"id":"batch_..."},...}
	// (batch.completed, batch.failed, batch.cancelled, batch.expired),
	// signed with webhook_secret as OpenAI signs its own: the SDKs'
	// client.webhooks.unwrap(body, headers, secret) accepts them. Each is
	// a URL (absolute http or https), which gets every tenant's events,
	// or {url: ..., tenants: [...]}, which gets only those tenants'
	// (OpenAI scopes webhooks per project). Delivered at least once, as
	// job webhooks are: retried for ~28 h, resent after a restart (see
	// docs/RELIABILITY.md). Needs webhook_secret; at most 16. A reload
	// applies a changed list to the batches that end after it; an event
	// already recorded keeps the endpoint it was recorded for.
	BatchWebhooks []BatchWebhook `yaml:"batch_webhooks"`
	// WorkerToken is no longer used: separate `sluice worker` processes
	// run jobs as their tenants through the admin listener, with
	// admin.worker_token (else admin.token). Parsed only so that a config still setting it gets an
	// error saying so, not "unknown key".
	WorkerToken string `yaml:"worker_token"`
}

func defaultQueue() Queue {
	return Queue{Enabled: true, Workers: 64, Retention: Duration(7 * 24 * time.Hour), MaxAttempts: 5,
		MaxFileBytes: 200 << 20, MaxUploadSpoolBytes: 1 << 30, MaxStoreBytes: 10 << 30, RequestTimeout: Duration(5 * time.Second),
		FileReadIdle: Duration(30 * time.Second), OrphanChunkAge: Duration(time.Hour), MaxActiveBatches: 128, MaxActiveBatchesPerTenant: 16}
}

func (c *Config) validateQueue(bad func(key, format string, args ...any)) {
	q := c.Queue
	if !q.Enabled {
		return
	}
	// Each server URL as the NATS client reads the list (split at ',', a
	// bare host:port taking nats://): one it cannot parse was accepted
	// here and failed at every connect, forever, its error quoting a
	// piece of the password when one holding '/', '?' or '#' was the
	// cause. Named redacted, with what to do.
	for _, s := range strings.Split(q.URL, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		full := s
		if !strings.Contains(s, "://") {
			full = "nats://" + s
		}
		u, err := url.Parse(full)
		if err != nil {
			bad("queue.url", "%q: %v", telemetry.RedactURLs(s), telemetry.RedactURLError(err, full))
			continue
		}
		// One that parses can still name no server: a typo in the scheme
		// ("nats//a:4222", "nats:/a:4222") read as host "nats" with a
		// path, which `sluice check` called valid and the gateway dialled
		// (nats:4222) forever, serving without its queue.
		switch {
		case u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss":
			bad("queue.url", "%q: scheme %q; want nats://, tls://, ws:// or wss:// (or a bare host:port)", telemetry.RedactURLs(s), u.Scheme)
		case u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
			bad("queue.url", "%q: want scheme://host:port (e.g. nats://nats-1:4222), comma-separated for a cluster", telemetry.RedactURLs(s))
		}
	}
	if q.Workers < 0 {
		bad("queue.workers", "must not be negative")
	}
	if q.Replicas < 0 {
		bad("queue.replicas", "must not be negative")
	}
	if q.RequestTimeout <= 0 {
		bad("queue.request_timeout", "must be positive, got %s", q.RequestTimeout)
	}
	if q.FileReadIdle <= 0 {
		bad("queue.file_read_idle", "must be positive, got %s", q.FileReadIdle.D())
	}
	if q.OrphanChunkAge < Duration(time.Minute) {
		bad("queue.orphan_chunk_age", "must be at least 1m (a write in progress must not look abandoned), got %s", q.OrphanChunkAge.D())
	}
	// The work stream's duplicate window (2m, jobs.Open: a retried
	// publish of a job is not enqueued twice) must fit in its max age,
	// the retention: nats-server refused a shorter one at start, with
	// "creating stream SLUICE_JOBS: nats: API error ... duplicates window
	// can not be larger then max age" and no key named.
	if q.Retention < Duration(2*time.Minute) {
		bad("queue.retention", "must be at least 2m (the job stream's duplicate window), got %s", q.Retention.D())
	}
	if q.MaxAttempts < 1 {
		bad("queue.max_attempts", "must be at least 1")
	}
	if q.MaxFileBytes <= 0 {
		bad("queue.max_file_bytes", "must be positive")
	}
	if q.MaxUploadSpoolBytes < q.MaxFileBytes {
		bad("queue.max_upload_spool_bytes", "must be at least queue.max_file_bytes (%d), so one upload fits; got %d", q.MaxFileBytes, q.MaxUploadSpoolBytes)
	}
	if q.MaxStoreBytes < 0 || (q.MaxStoreBytes > 0 && q.MaxStoreBytes < 2*q.MaxFileBytes) {
		bad("queue.max_store_bytes", "must be 0 (unbounded) or at least twice queue.max_file_bytes (%d), got %d", 2*q.MaxFileBytes, q.MaxStoreBytes)
	}
	if q.MaxActiveBatches < 1 {
		bad("queue.max_active_batches", "must be at least 1")
	}
	if q.MaxActiveBatchesPerTenant < 1 || q.MaxActiveBatchesPerTenant > q.MaxActiveBatches {
		bad("queue.max_active_batches_per_tenant", "must be from 1 to queue.max_active_batches (%d), got %d", q.MaxActiveBatches, q.MaxActiveBatchesPerTenant)
	}
	c.validateBatchWebhooks(bad)
	if q.WorkerToken != "" {
		bad("queue.worker_token", "is gone: `sluice worker` now runs jobs through the admin listener, authenticated with admin.worker_token, or admin.token when that is unset (sluice worker --token); move this key to admin.worker_token")
	}
	if q.Listen != "" {
		if problem := listenAddrProblem(q.Listen, "127.0.0.1:4222"); problem != "" {
			bad("queue.listen", "want host:port, got %q (%s)", q.Listen, problem)
		}
	}
}

// BatchWebhook is an entry of queue.batch_webhooks: written as a URL
// (every tenant's batch events, as before tenants existed) or as a
// section naming the tenants it receives.
type BatchWebhook struct {
	// URL is the endpoint: an absolute http or https URL.
	URL string `yaml:"url"`
	// Tenants are the tenants whose batch events the endpoint receives
	// (the tenant of keys[].tenant, or of a JWT's tenant claim); unset:
	// every tenant's. A name no caller can have (not an auth.keys
	// tenant; jwt:<claim> without auth.jwt; ip:<address> when every
	// caller needs a key) is warned about at start, reload and `sluice
	// check`, with its line.
	Tenants []string `yaml:"tenants"`
}

// UnmarshalYAML takes the URL form or the section.
func (b *BatchWebhook) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*b = BatchWebhook{URL: n.Value}
		return nil
	}
	type section BatchWebhook // without this method
	return n.Load((*section)(b))
}

// scalarForm marks a section type that may also be written as one
// value (checkSchema checks that value as a string).
func (BatchWebhook) scalarForm() {}

// maxBatchWebhooks bounds queue.batch_webhooks: each batch end queues one
// event per endpoint.
const maxBatchWebhooks = 16

func (c *Config) validateBatchWebhooks(bad func(key, format string, args ...any)) {
	q := c.Queue
	if len(q.BatchWebhooks) == 0 {
		return
	}
	if q.WebhookSecret == "" {
		bad("queue.batch_webhooks", "needs queue.webhook_secret: events are only sent signed")
	}
	if len(q.BatchWebhooks) > maxBatchWebhooks {
		bad("queue.batch_webhooks", "at most %d endpoints, got %d", maxBatchWebhooks, len(q.BatchWebhooks))
	}
	seen := make(map[string]bool, len(q.BatchWebhooks))
	for i, e := range q.BatchWebhooks {
		key := fmt.Sprintf("queue.batch_webhooks[%d]", i)
		if e.Tenants != nil {
			key += ".url" // the section form: its url key has the line
		}
		u, err := url.Parse(e.URL)
		switch {
		case e.URL == "":
			bad(key, "want the endpoint's URL")
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad(key, "want an absolute http or https URL")
		case seen[e.URL]:
			bad(key, "listed twice: each event would be sent twice (name every tenant it receives in one entry)")
		}
		seen[e.URL] = true
		if e.Tenants == nil {
			continue
		}
		tk := fmt.Sprintf("queue.batch_webhooks[%d].tenants", i)
		if len(e.Tenants) == 0 {
			bad(tk, "lists no tenant: the endpoint would receive nothing (remove tenants to send it every tenant's events)")
		}
		named := make(map[string]bool, len(e.Tenants))
		for j, t := range e.Tenants {
			switch {
			case strings.TrimSpace(t) == "":
				bad(fmt.Sprintf("%s[%d]", tk, j), "want a tenant name")
			case named[t]:
				bad(fmt.Sprintf("%s[%d]", tk, j), "%q listed twice", t)
			}
			named[t] = true
		}
	}
}
