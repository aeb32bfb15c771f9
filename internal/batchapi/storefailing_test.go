package batchapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// TestStoreFailingAnswer: a write refused because the embedded store's
// disk refuses writes is a 503 storage_unavailable with Retry-After (the
// gateway recovers by itself), not the 500 internal_error of a timeout
// nor the 507 of the store's own bound, and says nothing of the disk.
func TestStoreFailingAnswer(t *testing.T) {
	fault := fmt.Errorf("%w (data directory /var/lib/sluice/jetstream, since 2026-12-06T12:46:32Z): write /var/lib/sluice/x.blk: no space left on device", jobs.ErrStoreFailing)
	for _, err := range []error{
		fmt.Errorf("jobs: %w", fault),                                // refused before the write
		fmt.Errorf("storing upload: %w: %w", fault, nats.ErrTimeout), // a write the disk never acknowledged
	} {
		e, internal := apiError(err, objFile, "")
		if e.Status != http.StatusServiceUnavailable || e.Code != "storage_unavailable" || e.RetryAfter != 30*time.Second || internal {
			t.Errorf("%v: %d %q Retry-After %s internal %v; want 503 storage_unavailable, 30s", err, e.Status, e.Code, e.RetryAfter, internal)
		}
		if strings.Contains(e.Message, "/var/lib") || strings.Contains(e.Message, "no space") {
			t.Errorf("message %q tells the client about the gateway's disk", e.Message)
		}
	}
}
