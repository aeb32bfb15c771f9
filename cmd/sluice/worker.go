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
	fs := newFlagSet("worker", "--nats URL --gateway URL [--admin URL] [--admin-token TOKEN] [--api-key KEY] [--concurrency N]", stderr)
	natsURL := fs.String("nats", "", "NATS server with JetStream holding the queue (the gateway prints its embedded server's URL at start)")
	gatewayURL := fs.String("gateway", "", "Sluice gateway base URL the jobs run through, e.g. http://127.0.0.1:8080")
	adminURL := fs.String("admin", "http://127.0.0.1:9091", "the gateway's admin listener (admin.listen) base URL, where the worker polls /spare")
	adminToken := fs.String("admin-token", os.Getenv("SLUICE_ADMIN_TOKEN"), "the gateway's admin.token, if set (default $SLUICE_ADMIN_TOKEN)")
	apiKey := fs.String("api-key", os.Getenv("SLUICE_WORKER_API_KEY"), "API key the jobs are sent with (default $SLUICE_WORKER_API_KEY)")
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
	if *concurrency < 1 {
		return errors.New("--concurrency must be at least 1")
	}
	logger, err := telemetry.NewLogger(os.Stderr, *logLevel)
	if err != nil {
		return err
	}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	store, err := jobs.Open(openCtx, jobs.Options{URL: *natsURL, Name: "sluice-worker", MaxAttempts: *maxAttempts, Logger: logger})
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer store.Close()
	logger.Info("sluice worker running", "nats", *natsURL, "gateway", *gatewayURL, "admin", *adminURL, "concurrency", *concurrency)
	err = store.RunWorker(ctx, jobs.WorkerOptions{
		Concurrency: *concurrency,
		Executor:    &jobs.HTTPExecutor{Gateway: *gatewayURL, APIKey: *apiKey},
		Gate:        &jobs.HTTPGate{Admin: *adminURL, Token: *adminToken},
		Grace:       *grace,
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("worker: %w", err)
	}
	logger.Info("sluice worker stopped")
	return nil
}
