package batchapi

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
)

// Every answer apiError makes tells the official SDKs (which retry 408,
// 409, 429 and 5xx unless x-should-retry says otherwise) what to do, the
// header only where it changes their decision: a 409 (the object's state
// does not go back) and a 507 (space frees only by deletes or retention)
// are final; a 503 while NATS is away, the 429 of the active-batch bound
// (its minute is within what the SDKs wait), a stalled upload's 408 and an
// unexpected 500 are left to them. Without Final the 409 and 507 rows fail.
func TestEveryBatchAnswerTellsTheSDKWhetherToRetry(t *testing.T) {
	for _, c := range []struct {
		name        string
		err         error
		status      int
		shouldRetry string
	}{
		{"cancel a finished batch", &stateError{msg: "Cannot cancel a batch with status 'completed'.", err: jobs.ErrConflict}, 409, "false"},
		{"state conflict", fmt.Errorf("jobs: job x is done: %w", jobs.ErrConflict), 409, "false"},
		{"store full", jobs.ErrStoreFull, 507, "false"},
		{"too many batches", jobs.ErrTooManyBatches, 429, ""},
		{"queue unreachable", jobs.ErrUnavailable, 503, ""},
		{"queue closed", jobs.ErrClosed, 503, ""},
		{"stalled upload", &netguard.BodyTimeoutError{}, 408, ""},
		{"unexpected", fmt.Errorf("kv: %w", context.DeadlineExceeded), 503, ""},
		{"internal", fmt.Errorf("something else"), 500, ""},
		{"not found", jobs.ErrNotFound, 404, ""},
		{"too large", errFileTooLarge, 413, ""},
		{"malformed upload", errMalformedUpload, 400, ""},
		{"bad value", &openai.Error{Status: 400, Type: openai.TypeInvalidRequest, Code: "invalid_value", Message: "m"}, 400, ""},
		{"client left", context.Canceled, 499, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, _ := apiError(c.err, objBatch, "batch_x")
			rec := httptest.NewRecorder()
			openai.WriteError(rec, e)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			if got := rec.Header().Get("X-Should-Retry"); got != c.shouldRetry {
				t.Errorf("x-should-retry %q, want %q", got, c.shouldRetry)
			}
		})
	}
}
