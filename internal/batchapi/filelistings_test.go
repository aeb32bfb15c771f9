package batchapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/sluice-gw/sluice/internal/batchapi"
	"github.com/sluice-gw/sluice/internal/jobs"
)

// listingsFull is the store with every file-listing slot taken
// (jobs.MaxFileListings running): each listing is refused.
type listingsFull struct{ jobs.Service }

func (listingsFull) ListFiles(context.Context, string, string) ([]*jobs.File, error) {
	return nil, jobs.ErrTooManyListings
}

// A GET /v1/files refused because jobs.MaxFileListings listings run in
// this process is the gateway's capacity, not the client's rate (every
// tenant's listing counts against the same 4): a 503 server_error with
// Retry-After, as batch_create_busy, too_many_watchers and
// too_many_connections are, not a 429 rate_limit_error, which says the
// caller went over its own limit (and which a proxy's 5xx retry policy,
// Envoy's retry_on: 5xx, does not send to another replica, whose slots
// may be free).
func TestFileListingsRefusalIsCapacity(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.h = batchapi.New(batchapi.Options{Service: listingsFull{e.store}, Now: e.clock.Now,
		Models: func(m string) bool { return m == "m1" }, TempDir: t.TempDir()})
	r := e.get("/v1/files")
	er := r.wantError(t, http.StatusServiceUnavailable)
	if er.Error.Code == nil || *er.Error.Code != "too_many_file_listings" || er.Error.Type != "server_error" || r.header.Get("Retry-After") != "1" {
		t.Fatalf("a listing past the bound: %s, Retry-After %q; want too_many_file_listings, server_error, Retry-After 1", r.body, r.header.Get("Retry-After"))
	}
}
