package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// runWorker is a separate worker process: it takes jobs from the gateway's
// NATS JetStream queue and runs them through the gateway, from spare
// capacity only. Any number may run beside the gateway's own workers.
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("worker", "--nats URL --gateway URL --worker-token TOKEN [--admin URL] [--admin-token TOKEN] [--webhook-secret S] [--api-key KEY] [--concurrency N]", stderr)
	natsURL := fs.String("nats", "", "NATS server with JetStream holding the queue (the gateway prints its embedded server's URL at start)")
	gatewayURL := fs.String("gateway", "", "Sluice gateway base URL the jobs run through, e.g. http://127.0.0.1:8080")
	adminURL := fs.String("admin", "http://127.0.0.1:9091", "the gateway's admin listener (admin.listen) base URL, where the worker polls /spare")
	adminToken := fs.String("admin-token", os.Getenv("SLUICE_ADMIN_TOKEN"), "the gateway's admin.token, if set (default $SLUICE_ADMIN_TOKEN)")
	apiKey := fs.String("api-key", os.Getenv("SLUICE_WORKER_API_KEY"), "API key the jobs are sent with (default $SLUICE_WORKER_API_KEY)")
	workerToken := fs.String("worker-token", os.Getenv("SLUICE_WORKER_TOKEN"), "the gateway's queue.worker_token: lets jobs run as their submitting tenant (default $SLUICE_WORKER_TOKEN)")
	webhookSecret := fs.String("webhook-secret", os.Getenv("SLUICE_WEBHOOK_SECRET"), "the gateway's queue.webhook_secret, to sign the webhooks of jobs this worker finishes (default $SLUICE_WEBHOOK_SECRET)")
	allowPrivateHooks := fs.Bool("allow-private-webhooks", false, "deliver webhooks to loopback, private and link-local addresses (the gateway's queue.allow_private_webhooks)")
	concurrency := fs.Int("concurrency", 16, "jobs run at once")
	maxAttempts := fs.Int("max-attempts", 5, "executions ending in an error before a job is dead-lettered")
	grace := fs.Duration("grace", 10*time.Second, "on SIGTERM, how long running jobs may finish before they go back to the queue")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *natsURL == "" || *gatewayURL == "" {
		fs.Usage()
		return errors.New("need --nats and --gateway")
	}
	if *workerToken == "" {
		fs.Usage()
		return errors.New("need --worker-token (the gateway's queue.worker_token): without it the gateway cannot run jobs as their tenants")
	}
	if *concurrency < 1 {
		return errors.New("--concurrency must be at least 1")
	}
	logger, err := telemetry.NewLogger(os.Stderr, *logLevel)
	if err != nil {
		return err
	}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if *webhookSecret == "" {
		logger.Warn("no --webhook-secret: webhooks of the jobs this worker finishes are not sent (never unsigned)")
	}
	store, err := jobs.Open(openCtx, jobs.Options{URL: *natsURL, Name: "sluice-worker", MaxAttempts: *maxAttempts, Logger: logger,
		WebhookSecret: []byte(*webhookSecret), AllowPrivateWebhooks: *allowPrivateHooks})
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer store.Close()
	logger.Info("sluice worker running", "nats", *natsURL, "gateway", *gatewayURL, "admin", *adminURL, "concurrency", *concurrency)
	err = store.RunWorker(ctx, jobs.WorkerOptions{
		Concurrency: *concurrency,
		Executor:    &jobs.HTTPExecutor{Gateway: *gatewayURL, WorkerToken: *workerToken, APIKey: *apiKey},
		Gate:        &jobs.HTTPGate{Admin: *adminURL, Token: *adminToken},
		Grace:       *grace,
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("worker: %w", err)
	}
	logger.Info("sluice worker stopped")
	return nil
}
