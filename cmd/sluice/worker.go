package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/app"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// runWorker is a separate worker process: it takes jobs from the gateway's
// NATS JetStream queue and runs them through the gateway's admin listener,
// as their tenants, from spare capacity only. Any number may run beside
// the gateway's own workers.
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	f, err := parseWorkerFlags(args)
	if err != nil {
		return err
	}
	return f.run(ctx, stderr)
}

// run is the worker's life once its command line is settled.
func (f *workerFlags) run(ctx context.Context, stderr io.Writer) (err error) {
	// The first SIGTERM or SIGINT ends ctx (main): no new job is taken,
	// running ones get --grace. The second cuts them at once, back to the
	// queue, where before it was swallowed and the grace ran on. Registered
	// first, so that none is missed.
	cut, stopSignals := cutAtSecondSignal()
	defer stopSignals()
	logger, err := telemetry.NewLogger(stderr, f.logLevel)
	if err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	// Bound first, as serve binds its listeners; closed last, so that the
	// stop's counts can be scraped while it runs (workermetrics.go).
	metricsLn, err := listenWorkerMetrics(f.metricsListen)
	if err != nil {
		return err
	}
	var reg *prometheus.Registry
	if metricsLn != nil {
		reg = newWorkerRegistry()
		defer serveWorkerMetrics(metricsLn, workerMetricsHandler(reg, netguard.AdminSendTimeout), logger)()
		if f.metricsBound != nil {
			f.metricsBound(metricsLn.Addr())
		}
	} else {
		logger.Info("worker metrics off: --metrics-listen ADDR serves them (its jobs' executions, retries, dead letters, webhooks, its tracker's batches)")
	}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	store, err := f.openStore(openCtx, logger, reg)
	if err != nil {
		return err
	}
	// Bounded, whatever NATS does (workerstop.go); given up, the stop was
	// not clean: the exit status says so (app.ErrStopNotClean).
	closeIn := workerCloseBound // and what the workers leave of their bound (waitWorker)
	defer func() {
		// A second signal during the close shortens it (cut).
		if closed, bound := closeWorkerStore(store, logger, closeIn, cut, wallStopClock()); !closed && err == nil {
			err = fmt.Errorf("%w: the job store did not close within %s (NATS answers nothing); the jobs this worker held run again after their AckWait",
				app.ErrStopNotClean, bound.Round(time.Second))
		}
	}()
	logger.Info("sluice worker running", "nats", gateway.RedactURLs(f.natsURL), "admin", f.adminURL, "concurrency", f.concurrency)
	left, err := f.runJobs(ctx, store, logger, cut)
	closeIn = closeBound(left)
	return err
}

// workerFlags is the worker's command line.
type workerFlags struct {
	natsURL, adminURL, token, adminToken string
	// Gone with the move to the admin listener; kept so that an old
	// command line fails with a message saying what to use instead.
	gatewayURL, workerToken, apiKey string
	webhookSecret, batchHooks       string
	allowPrivateHooks               bool
	concurrency, maxAttempts        int
	grace                           time.Duration
	logLevel                        string
	// metricsListen is --metrics-listen: "off" or host:port.
	metricsListen string
	// metricsBound, in tests, is told the metrics listener's address.
	metricsBound func(net.Addr)
	// endpoints is --batch-webhooks read (settle).
	endpoints []jobs.BatchEndpoint
}

// parseWorkerFlags parses the worker's command line and settles it.
func parseWorkerFlags(args []string) (*workerFlags, error) {
	fs := newFlagSet("worker", "--admin URL --token TOKEN [--nats URL] [--webhook-secret S] [--concurrency N]")
	f := &workerFlags{}
	fs.StringVar(&f.natsURL, "nats", "", "NATS server with JetStream holding the queue; default: the one the gateway at --admin uses (asked at GET /worker/v1/queue)")
	fs.StringVar(&f.adminURL, "admin", "http://127.0.0.1:9091", "the gateway's admin listener (admin.listen) as http://host:port (host:port alone is taken as http://): the worker polls /spare there and sends jobs to /worker/v1/…, where they run as their tenants")
	// The secrets' defaults come from the environment after parsing, not
	// as flag defaults: --help and usage errors print a flag's default,
	// and would print the token.
	fs.StringVar(&f.token, "token", "", "the gateway's admin.worker_token, or its admin.token when that is unset; required (default $SLUICE_WORKER_TOKEN, else $SLUICE_ADMIN_TOKEN)")
	// The flag before admin.worker_token: kept, as the same credential.
	fs.StringVar(&f.adminToken, "admin-token", "", "the same as --token (its name before admin.worker_token)")
	fs.StringVar(&f.gatewayURL, "gateway", "", "removed: jobs go to the admin listener (--admin)")
	fs.StringVar(&f.workerToken, "worker-token", "", "removed: use --token (admin.worker_token, else admin.token)")
	fs.StringVar(&f.apiKey, "api-key", "", "removed: jobs run as their tenants, no key needed")
	fs.StringVar(&f.webhookSecret, "webhook-secret", "", "the gateway's queue.webhook_secret, to sign the webhooks of jobs this worker finishes (default $SLUICE_WEBHOOK_SECRET)")
	// A worker's tracker may be the one that finishes a batch (it wins
	// the compare-and-swap as often as a gateway's): without the list, the
	// event of a batch it finished would not be sent.
	fs.StringVar(&f.batchHooks, "batch-webhooks", "", "the gateway's queue.batch_webhooks, comma-separated: endpoints sent an OpenAI webhook event when a batch this worker's tracker finishes ends; an entry TENANT=URL sends URL only that tenant's (repeat it for each of the endpoint's tenants), a bare URL every tenant's. Checked at start (exit 2): each URL, a tenant's form as the gateway names tenants (ip:<IPv4 or IPv6 /64>, key:<12 hex digits>, jwt:<claim>), no entry twice; not whether a caller has the tenant (no auth here)")
	fs.BoolVar(&f.allowPrivateHooks, "allow-private-webhooks", false, "deliver webhooks to loopback, private and link-local addresses (the gateway's queue.allow_private_webhooks)")
	fs.IntVar(&f.concurrency, "concurrency", 16, "jobs run at once")
	fs.IntVar(&f.maxAttempts, "max-attempts", 5, "executions ending in an error before a job is dead-lettered")
	fs.DurationVar(&f.grace, "grace", 10*time.Second, "on SIGTERM (no new job is taken from then), how long running jobs may finish before they go back to the queue; a second SIGTERM or SIGINT cuts them at once. The whole stop ends within --grace + 7s of the first signal (2s to hand jobs back, then the NATS close, which gets what they left; exit 1 when given up): a supervisor's kill timeout must exceed it")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.metricsListen, "metrics-listen", "off", "serve this worker's Prometheus metrics at http://`ADDR`/metrics (its jobs' executions, retries, dead letters, answers too large, webhook outcomes, its tracker's batches and lines, the queue's depth), as host:port; \"off\" serves none. No token: it answers whoever reaches ADDR, so bind it to loopback (127.0.0.1:9092) or an address only the scraper reaches; give each worker on a host its own port")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if err := f.settle(); err != nil {
		return nil, err
	}
	return f, nil
}

// settle takes the secrets not given from the environment and checks the
// flags (usage errors, exit 2), before the gateway is asked for anything.
func (f *workerFlags) settle() (err error) {
	switch {
	case f.token != "" && f.adminToken != "" && f.token != f.adminToken:
		return usagef("--token and --admin-token are the same credential: give one")
	case f.token == "":
		f.token = f.adminToken
	}
	if f.token == "" {
		f.token = os.Getenv("SLUICE_WORKER_TOKEN")
	}
	if f.token == "" {
		f.token = os.Getenv("SLUICE_ADMIN_TOKEN")
	}
	if f.webhookSecret == "" {
		f.webhookSecret = os.Getenv("SLUICE_WEBHOOK_SECRET")
	}
	if f.gatewayURL != "" || f.workerToken != "" || f.apiKey != "" {
		return usagef("--gateway, --worker-token and --api-key are gone: the worker sends jobs to the gateway's admin listener (--admin) with its admin.worker_token, or admin.token when that is unset (--token)")
	}
	if f.token == "" {
		return usagef("need --token (the gateway's admin.worker_token, or admin.token when that is unset): the gateway runs jobs as their tenants only for an authenticated worker")
	}
	if f.batchHooks != "" && f.webhookSecret == "" {
		return usagef("--batch-webhooks needs --webhook-secret: events are only sent signed")
	}
	// Checked before the gateway is asked for the queue: a bad entry is a
	// command line the worker cannot take (exit 2), whatever the gateway.
	if f.endpoints, err = batchEndpoints(f.batchHooks, f.allowPrivateHooks); err != nil {
		return usagef("%w", err)
	}
	if f.concurrency < 1 {
		return usagef("--concurrency %d: want at least 1", f.concurrency)
	}
	if f.grace <= 0 {
		return usagef("--grace %v: want a positive duration (a second SIGTERM or SIGINT cuts running jobs at once)", f.grace)
	}
	if f.adminURL, err = adminBase(f.adminURL); err != nil {
		return err
	}
	if f.metricsListen != "off" {
		if _, _, err := net.SplitHostPort(f.metricsListen); err != nil {
			return usagef("--metrics-listen %q: want host:port (127.0.0.1:9092, :9092) or off", f.metricsListen)
		}
	}
	if f.maxAttempts < 1 {
		return usagef("--max-attempts %d: want at least 1", f.maxAttempts)
	}
	return nil
}

// cutAtSecondSignal listens for SIGTERM and SIGINT: cut closes at the
// second (the first ends main's ctx). stop ends the listening and its
// goroutine.
func cutAtSecondSignal() (cut <-chan struct{}, stop func()) {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	sigDone := make(chan struct{})
	cutCh := make(chan struct{})
	go cutOnSecondSignal(sig, sigDone, func() { close(cutCh) })
	return cutCh, func() {
		close(sigDone)
		signal.Stop(sig)
	}
}

// openStore opens the job store on the queue's NATS: --nats, or without
// it the one the gateway at --admin uses.
func (f *workerFlags) openStore(ctx context.Context, logger *slog.Logger, reg *prometheus.Registry) (*jobs.Store, error) {
	if f.natsURL == "" {
		asked, err := jobs.AskQueueURL(ctx, f.adminURL, f.token, nil)
		switch {
		case errors.Is(err, jobs.ErrAdminUnreachable):
			// No --nats: the gateway must say which NATS; say both ways out.
			return nil, fmt.Errorf("%w (is the gateway running, with --admin its admin.listen? or pass --nats)", err)
		case err != nil:
			// The gateway answered: its answer says what is wrong.
			return nil, err
		}
		f.natsURL = asked
		logger.Info("queue URL from the gateway", "admin", f.adminURL, "nats", gateway.RedactURLs(asked))
	}
	if f.webhookSecret == "" {
		logger.Warn("no --webhook-secret: webhooks of the jobs this worker finishes are not sent (never unsigned)")
	}
	o := jobs.Options{URL: f.natsURL, Name: "sluice-worker", MaxAttempts: f.maxAttempts, Logger: logger,
		WebhookSecret: []byte(f.webhookSecret), AllowPrivateWebhooks: f.allowPrivateHooks, BatchWebhooks: f.endpoints}
	if reg != nil { // a nil *Registry in the interface would not be nil
		o.Registerer = reg
	}
	return jobs.Open(ctx, o)
}

// runJobs runs the job workers until ctx ends and they stop, within their
// bound (waitWorker); left is what they left of it, for the store's close.
func (f *workerFlags) runJobs(ctx context.Context, store *jobs.Store, logger *slog.Logger, cut <-chan struct{}) (left time.Duration, err error) {
	// On its own goroutine so that the stop's wait is bounded: past the
	// bound the process exits with it still blocked on NATS.
	done := make(chan error, 1)
	go func() {
		done <- store.RunWorker(ctx, jobs.WorkerOptions{
			Concurrency: f.concurrency,
			Executor:    &jobs.HTTPExecutor{Admin: f.adminURL, Token: f.token, Log: logger},
			Gate:        &jobs.HTTPGate{Admin: f.adminURL, Token: f.token, Log: logger},
			Grace:       f.grace,
			Cut:         cut,
		})
	}()
	stopped, left, err := waitWorker(ctx, done, cut, f.grace, wallStopClock())
	if !stopped {
		bound := app.AddBounds(f.grace, workerCutBound)
		logger.Error("job workers did not stop within their bound: NATS answers nothing; exiting without them, as after a crash: their jobs run again after their AckWait",
			"bound", bound.String())
		// Not nil: a supervisor sees a stop that was not clean (exit 1).
		return left, fmt.Errorf("%w: the job workers did not stop within %s (NATS answers nothing); their jobs run again after their AckWait",
			app.ErrStopNotClean, bound)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return left, err
	}
	logger.Info("sluice worker stopped")
	return left, nil
}

// adminBase is --admin as a base URL. A bare host:port (as admin.listen
// is written) is taken as http://host:port; anything else must be an http
// or https URL with a host: a usage error naming the flag, not Go's URL
// parse error ("first path segment in URL cannot contain colon") at the
// first request.
func adminBase(s string) (string, error) {
	base := s
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", usagef("--admin %q: want the gateway's admin listener (admin.listen) as http://host:port, or host:port", s)
	}
	return base, nil
}

// batchEndpoints reads --batch-webhooks: comma-separated entries, each a
// URL (every tenant's events) or TENANT=URL (that tenant's; the entries
// of one URL add up). A URL's own '=' (in its query) comes after "://",
// so an entry is TENANT=URL only when what precedes its first '=' holds
// no "://". Each entry is checked as far as a worker can
// (checkBatchHookEntry); allowPrivate is --allow-private-webhooks.
func batchEndpoints(v string, allowPrivate bool) ([]jobs.BatchEndpoint, error) {
	var out []jobs.BatchEndpoint
	at := map[string]int{}
	for _, entry := range splitList(v) {
		tenant, u, scoped := strings.Cut(entry, "=")
		if !scoped || strings.Contains(tenant, "://") {
			tenant, u, scoped = "", entry, false
		}
		tenant, u = strings.TrimSpace(tenant), strings.TrimSpace(u)
		if err := checkBatchHookEntry(tenant, u, scoped, allowPrivate); err != nil {
			return nil, fmt.Errorf("--batch-webhooks: entry %q: %w", entry, err)
		}
		i, seen := at[u]
		switch {
		case !seen:
			at[u] = len(out)
			out = append(out, jobs.BatchEndpoint{URL: u})
			if scoped {
				out[len(out)-1].Tenants = []string{tenant}
			}
		case !scoped || out[i].Tenants == nil:
			return nil, fmt.Errorf("--batch-webhooks: %s listed again with a bare URL entry (which means every tenant): each event would be sent twice", u)
		case slices.Contains(out[i].Tenants, tenant):
			return nil, fmt.Errorf("--batch-webhooks: entry %q: listed twice (a typo for another tenant?)", entry)
		default:
			out[i].Tenants = append(out[i].Tenants, tenant)
		}
	}
	return out, nil
}

// splitList is a comma-separated flag's non-empty items, trimmed.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
