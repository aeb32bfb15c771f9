package batchapi_test

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/batchapi"
	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/openai"
)

func (e *env) submit(key string) response {
	e.t.Helper()
	hdr := []string{}
	if key != "" {
		hdr = append(hdr, "Idempotency-Key", key)
	}
	return e.do(e.tenant, http.MethodPost, "/async/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m1","messages":[{"role":"user","content":"hi"}]}`), hdr...)
}

func TestAsyncJobAcceptGetCancel(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.submit("key-1")
	var j jobs.Job
	r.json(t, &j)
	if r.status != http.StatusAccepted || r.header.Get("Location") != "/v1/jobs/"+j.ID || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("accept: %d %v %s", r.status, r.header, r.body)
	}
	if j.ID == "" || j.Object != "job" || j.Status != jobs.StatusQueued || j.Path != "/v1/chat/completions" ||
		j.Model != "m1" || j.CreatedAt != testNow.Unix() {
		t.Fatalf("job %s", r.body)
	}
	if bytes.Contains(r.body, []byte("tenant-a")) || bytes.Contains(r.body, []byte("messages")) {
		t.Errorf("job JSON leaks the tenant or the body: %s", r.body)
	}

	replay := e.submit("key-1")
	var j2 jobs.Job
	replay.json(t, &j2)
	if replay.status != http.StatusAccepted || j2.ID != j.ID || replay.header.Get("Idempotent-Replayed") != "true" ||
		replay.header.Get("Location") != "/v1/jobs/"+j.ID {
		t.Fatalf("replay: %d %v %s", replay.status, replay.header, replay.body)
	}
	var j3 jobs.Job
	e.submit("key-2").json(t, &j3)
	if j3.ID == j.ID {
		t.Fatal("another idempotency key got the same job")
	}

	got := e.get("/v1/jobs/" + j.ID)
	var jg jobs.Job
	got.json(t, &jg)
	if got.status != http.StatusOK || jg.ID != j.ID || jg.Status != jobs.StatusQueued {
		t.Fatalf("GET job: %d %s", got.status, got.body)
	}

	del := e.do(e.tenant, http.MethodDelete, "/v1/jobs/"+j.ID, "", nil)
	del.json(t, &jg)
	if del.status != http.StatusOK || jg.Status != jobs.StatusCancelled {
		t.Fatalf("DELETE job: %d %s", del.status, del.body)
	}
	er := e.do(e.tenant, http.MethodDelete, "/v1/jobs/"+j.ID, "", nil).wantError(t, http.StatusConflict)
	if er.Error.Message != "Cannot cancel a job with status 'cancelled'." {
		t.Errorf("second DELETE: %+v", er.Error)
	}
	er = e.get("/v1/jobs/job_nope").wantError(t, http.StatusNotFound)
	if er.Error.Message != "No such Job object: job_nope" {
		t.Errorf("unknown job: %+v", er.Error)
	}
}

func TestAsyncJobRuns(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.startWorker()
	var j jobs.Job
	e.submit("").json(t, &j)
	eventually(t, "job succeeded", func() bool {
		e.get("/v1/jobs/"+j.ID).json(t, &j)
		return j.Status.Terminal()
	})
	if j.Status != jobs.StatusSucceeded || j.Result == nil || j.Result.StatusCode != 200 ||
		!bytes.Contains(j.Result.Body, []byte(`"content":"hello"`)) {
		t.Fatalf("finished job %+v", j)
	}
	e.do(e.tenant, http.MethodDelete, "/v1/jobs/"+j.ID, "", nil).wantError(t, http.StatusConflict)
}

func TestQueueClosed(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.store.Close()
	for _, r := range []response{e.get("/v1/batches"), e.get("/v1/jobs/job_1"), e.submit(""), e.upload(chatFile("a"))} {
		r.wantError(t, http.StatusServiceUnavailable)
		if r.header.Get("Retry-After") == "" {
			t.Errorf("503 without Retry-After: %v", r.header)
		}
	}
}

func TestParseWebhook(t *testing.T) {
	for _, ok := range []string{"https://hooks.example.com/sluice", "http://10.0.0.1:8080/x?y=1", " HTTPS://h.example/ "} {
		if u, err := batchapi.ParseWebhook(ok); err != nil || u == "" {
			t.Errorf("ParseWebhook(%q) = %q, %v", ok, u, err)
		}
	}
	for _, bad := range []string{"", "/relative", "ftp://h/x", "https://", "http://:80/", "mailto:a@b.c", "javascript:alert(1)",
		"https://h/" + strings.Repeat("a", 3000), "http//missing-colon", "https://bad host/"} {
		_, err := batchapi.ParseWebhook(bad)
		var oe *openai.Error
		if !errors.As(err, &oe) || oe.Status != 400 || oe.Param != batchapi.WebhookHeader {
			t.Errorf("ParseWebhook(%q) error %v", bad, err)
		}
	}
}
