package batchapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// createBatch uploads a one-line file as tenant and asks for a batch over
// it.
func (e *env) createBatch(tenant string) response {
	e.t.Helper()
	ct, body := multipartUpload("batch", chatFile("a"), false, true)
	up := e.do(tenant, http.MethodPost, "/v1/files", ct, body)
	if up.status != http.StatusOK {
		e.t.Fatalf("upload: %d %s", up.status, up.body)
	}
	var f jobs.File
	up.json(e.t, &f)
	b, _ := json.Marshal(map[string]any{"input_file_id": f.ID, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
	return e.do(tenant, http.MethodPost, "/v1/batches", "application/json", bytes.NewReader(b))
}

// Active batches are bounded in all and per tenant: many tenants each
// creating batches (none finishing: no worker runs) get 200 up to the
// bounds, then a 429 too_many_active_batches with Retry-After, and
// /metrics shows the count, the bound and the refusals. A batch that
// ends makes room again.
func TestActiveBatchesAreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOptions{maxActive: 5, maxActivePerTenant: 2, reg: reg})
	var created []jobs.Batch
	refused := 0
	for i := range 12 {
		tenant := fmt.Sprintf("tenant-%d", i/3) // three attempts each: the third is over the tenant's bound
		r := e.createBatch(tenant)
		if r.status == http.StatusOK {
			var b jobs.Batch
			r.json(t, &b)
			created = append(created, b)
			continue
		}
		er := r.wantError(t, http.StatusTooManyRequests)
		if er.Error.Code == nil || *er.Error.Code != "too_many_active_batches" || er.Error.Type != "rate_limit_error" || r.header.Get("Retry-After") != "60" {
			t.Fatalf("refusal %d: %s, Retry-After %q", i, r.body, r.header.Get("Retry-After"))
		}
		refused++
	}
	// tenant-0 and tenant-1 two each, tenant-2 one (the total's bound),
	// tenant-3 none.
	if len(created) != 5 || refused != 7 {
		t.Fatalf("%d created, %d refused; want 5 and 7", len(created), refused)
	}
	for name, want := range map[string]float64{"sluice_jobs_active_batches": 5, "sluice_jobs_active_batches_limit": 5,
		"sluice_jobs_batches_refused_total": 7} {
		if got := gathered(t, reg, name); got != want {
			t.Errorf("%s %v, want %v", name, got, want)
		}
	}

	// Cancelling one of tenant-0's batches makes room for tenant-0 once
	// the tracker has finished it.
	if r := e.do("tenant-0", http.MethodPost, "/v1/batches/"+created[0].ID+"/cancel", "", nil); r.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	eventually(t, "room for tenant-0 after its batch was cancelled", func() bool {
		r := e.createBatch("tenant-0")
		return r.status == http.StatusOK
	})
	if got := gathered(t, reg, "sluice_jobs_active_batches"); got != 5 {
		t.Errorf("active batches %v after one ended and one began, want 5", got)
	}
}

// gathered is the value of name's one sample in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	n, err := testutil.GatherAndCount(reg, name)
	if err != nil || n != 1 {
		t.Fatalf("%s: %d samples, %v", name, n, err)
	}
	return promtest.Value(t, reg, name, "")
}
