package gateway

import (
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// TestStatusSaysJobClassesDown: a class whose queue consumer the workers
// cannot create is in /status's jobs.classes_down (the dashboard's
// "Needs attention" reads it), next to the backlog.
func TestStatusSaysJobClassesDown(t *testing.T) {
	const down = "batch: consumer cannot be created since 2026-12-06T19:00:00Z, its jobs wait: filtered consumer not unique on workqueue stream"
	doc := statusWithJobQueue(t, jobs.Backlog{Jobs: 1, ClassesDown: down})
	if !strings.Contains(doc.Jobs.ClassesDown, "batch: consumer cannot be created") || doc.Jobs.Backlog == nil {
		t.Fatalf("/status jobs = %+v; want classes_down %q", doc.Jobs, down)
	}
}
