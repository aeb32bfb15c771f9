package jobs

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A worker the admin listener refuses (its credential is stale: a rotated
// admin.worker_token) did not run the job: the error is ErrNotDelivered,
// so the job goes back to the queue uncounted. Before, each refusal
// counted an attempt and --max-attempts of them dead-lettered the job.
func TestRefusedWorkerDoesNotSpendAnAttempt(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
		}))
		e := &HTTPExecutor{Admin: gw.URL, Token: "stale"}
		_, err := e.Execute(context.Background(), &Job{ID: "job_1", Tenant: "acme", Path: "/v1/chat/completions", Body: []byte(`{}`)})
		gw.Close()
		if !errors.Is(err, ErrNotDelivered) {
			t.Errorf("%d: %v, want ErrNotDelivered (the job did not run)", status, err)
		}
	}
}
