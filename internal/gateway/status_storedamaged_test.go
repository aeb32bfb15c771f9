package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// TestStatusSaysJobStoreDamaged: what the embedded store's start found
// damaged on disk is in /status's jobs.store_damaged (the dashboard's
// "Needs attention" reads it), next to the backlog.
func TestStatusSaysJobStoreDamaged(t *testing.T) {
	const damaged = "found at start in data directory /var/lib/sluice/jetstream: KV_sluice_jobs: 3 messages at the last clean stop, 1 now: 2 lost"
	doc := statusWithJobQueue(t, jobs.Backlog{Jobs: 1, StoreDamaged: damaged})
	if !strings.Contains(doc.Jobs.StoreDamaged, "KV_sluice_jobs") || doc.Jobs.Backlog == nil {
		t.Fatalf("/status jobs = %+v; want store_damaged %q", doc.Jobs, damaged)
	}
}

// statusWithJobQueue is /status of a gateway whose job queue reports
// backlog.
func statusWithJobQueue(t *testing.T, backlog jobs.Backlog) statusDoc {
	t.Helper()
	be := newOKBackend(t)
	_, gw := startGateway(t, testConfig(be.URL))
	admin := adminServer(t, gw)
	gw.SetJobQueue(func(context.Context) (jobs.Backlog, error) {
		return backlog, nil
	})
	return statusOf(t, admin.URL)
}
