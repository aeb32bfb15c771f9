package admission

import (
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// A batch request may wait up to max_wait_batch (default 5 minutes): its
// wait must land in a finite bucket, or histogram_quantile reports every
// batch p99 above the last bound as that bound (128 s before).
func TestWaitBucketsReachTheBatchWait(t *testing.T) {
	longest := config.Default().Admission.MaxWaitBatch.D()
	c := newCounters()
	c.waited(Batch, longest)
	h := c.waits[Batch]
	if inf := h.counts[len(waitBuckets)]; inf != 0 {
		t.Fatalf("a batch wait of %s (the default max_wait_batch) falls in +Inf: the last finite bound is %gs", longest, waitBuckets[len(waitBuckets)-1])
	}
}
