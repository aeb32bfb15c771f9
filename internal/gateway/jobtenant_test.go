package gateway

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/jobs"
)

// A job its tenant's limit refuses comes back at once as a 429 with the
// limiter's wait, for the worker to hand it back to the queue — it is not
// retried here as if the pool were busy, and other tenants' jobs run.
func TestThrottledJobReturnsWithRetryAfter(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.RateLimits.PerTenant = config.RateRule{Requests: limitPtr(t, "rate=1r/m")}
	_, gw := startGateway(t, cfg)
	job := func(tenant string) *jobs.Job {
		return &jobs.Job{ID: "j-" + tenant, Tenant: tenant, Path: "/v1/chat/completions", Model: "m1", Class: "batch",
			Body: []byte(`{"model":"m1","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)}
	}
	ctx := context.Background()
	if res, err := gw.JobExecutor().Execute(ctx, job("acme")); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("first job: %v %d %s", err, res.StatusCode, res.Body)
	}
	start := time.Now()
	res, err := gw.JobExecutor().Execute(ctx, job("acme"))
	if err != nil || res.StatusCode != http.StatusTooManyRequests || res.RetryAfter < time.Second {
		t.Fatalf("second job of acme: %v %d RetryAfter=%s %s", err, res.StatusCode, res.RetryAfter, res.Body)
	}
	if took := time.Since(start); took >= busyRetryFor {
		t.Fatalf("a throttled job held its worker for %s", took)
	}
	if res, err := gw.JobExecutor().Execute(ctx, job("other")); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("other's job: %v %d %s", err, res.StatusCode, res.Body)
	}
}

// Webhooks are checked at submit: none without a secret to sign them,
// none to internal address literals unless allowed.
func TestCheckWebhook(t *testing.T) {
	for _, c := range []struct {
		signed, private bool
		url             string
		ok              bool
	}{
		{true, false, "https://hooks.example.com/x", true},
		{false, false, "https://hooks.example.com/x", false},
		{true, false, "http://169.254.169.254/latest/meta-data", false},
		{true, false, "http://[fd00:ec2::254]/", false},
		{true, false, "http://127.0.0.1:8080/", false},
		{true, true, "http://127.0.0.1:8080/", true},
	} {
		g := &Gateway{webhooksSigned: c.signed, privateHooks: c.private}
		_, err := g.checkWebhook(c.url)
		if (err == nil) != c.ok {
			t.Errorf("signed=%v private=%v %s: %v, want ok=%v", c.signed, c.private, c.url, err, c.ok)
		}
		if err != nil && apiError(err, "").Param != "X-Sluice-Webhook" {
			t.Errorf("%s: error does not name the header: %v", c.url, err)
		}
	}
}

// A worker's assertion yields exactly one of a job call (as the tenant it
// names) and an error naming the header, and the header never survives;
// the public listener's check refuses any request that carries it.
func FuzzAssertedJob(f *testing.F) {
	f.Add("acme", "batch")
	f.Add("", "")
	f.Add("a%zz", "interactive")
	f.Add("a\x00b", "BATCH")
	f.Fuzz(func(t *testing.T, tenant, prio string) {
		r, _ := http.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
		r.Header[JobTenantHeader] = []string{tenant}
		r.Header.Set("X-Sluice-Priority", prio)
		var rh requestHeaders
		if rh.read(r.Header); !rh.jobTenant {
			t.Fatal("the public check let an assertion through")
		}
		jc, err := assertedJob(r)
		if (jc == nil) == (err == nil) {
			t.Fatalf("want exactly one of a job call and an error: %v %v", jc, err)
		}
		if err != nil && err.Param != JobTenantHeader {
			t.Fatalf("error does not name the header: %+v", err)
		}
		if jc != nil {
			if want, uerr := url.QueryUnescape(tenant); uerr != nil || jc.id.tenant != want || want == "" {
				t.Fatalf("asserted %q ran as %q", tenant, jc.id.tenant)
			}
		}
		if r.Header.Get(JobTenantHeader) != "" {
			t.Fatal("assertion header left on the request")
		}
	})
}
