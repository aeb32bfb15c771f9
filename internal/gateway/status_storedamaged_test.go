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
	be := newOKBackend(t)
	_, gw := startGateway(t, testConfig(be.URL))
	admin := adminServer(t, gw)
	const damaged = "found at start in data directory /var/lib/sluice/jetstream: KV_sluice_jobs: 3 messages at the last clean stop, 1 now: 2 lost"
	gw.SetJobQueue(func(context.Context) (jobs.Backlog, error) {
		return jobs.Backlog{Jobs: 1, StoreDamaged: damaged}, nil
	})
	doc := statusOf(t, admin.URL)
	if !strings.Contains(doc.Jobs.StoreDamaged, "KV_sluice_jobs") || doc.Jobs.Backlog == nil {
		t.Fatalf("/status jobs = %+v; want store_damaged %q", doc.Jobs, damaged)
	}
}
