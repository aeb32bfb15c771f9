package gateway

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// TestFollowUp502OfADeadPoolSaysWhenItIsBack: a follow-up of a stored
// response (GET /v1/responses/{id}) whose backends all fail answers an
// error of the gateway's own; it said Retry-After: 1 even with the pool's
// only backend ejected for fail_timeout (10 s), where the inference
// path's 502 says 10 (failedPoolRetry, TestOwn502OfADeadPoolSaysWhenItIsBack).
// An id no replica knows is probed: a probe that could not ask is the
// 503 response_unavailable (respunknown.go), whose wait comes from the
// pool's state as well. Old code: 502 with ra=1.
func TestFollowUp502OfADeadPoolSaysWhenItIsBack(t *testing.T) {
	var accepts atomic.Int32
	cfg := testConfig(resettingBackend(t, &accepts))
	clock := new(atomic.Int64)
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) { d.Now = now })

	followUp := func() (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/v1/responses/resp_abc")
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	if code, ra := followUp(); code != http.StatusServiceUnavailable || ra != "1" {
		t.Fatalf("follow-up with the backend still usable: %d Retry-After %q, want 503 with 1", code, ra)
	}
	// Three failed inference calls (max_fails 3) eject the backend for
	// fail_timeout, on the gateway's clock.
	answers, _ := sdkCall(t, srv.URL+"/v1/chat/completions", chatBody, clock)
	if answers[len(answers)-1] != "502 ra=10 sr=" {
		t.Fatalf("inference answers %v, want the last to say 10", answers)
	}
	if code, ra := followUp(); code != http.StatusServiceUnavailable || ra != "10" {
		t.Fatalf("follow-up with the backend ejected for 10 s: %d Retry-After %q, want 503 with 10", code, ra)
	}
}

// TestJob502CarriesTheWait: a queued job run in process (the job entry)
// on a pool whose only backend resets every connection gets the chain's
// own 502, whose Retry-After says when a backend is back
// (failedPoolRetry): 1 s while the backend is still usable, 10 s
// (fail_timeout) once its failures ejected it. The job's Result dropped
// it (RetryAfter 0), so the worker ran the job again after its own 2 s
// retry delay, a last-resort trial on the dead backend; now it carries
// it (the worker waits at least that long: jobs'
// TestJob502RunsAgainNoSoonerThanAdvised). Old code: 0 every time.
func TestJob502CarriesTheWait(t *testing.T) {
	var accepts atomic.Int32
	cfg := testConfig(resettingBackend(t, &accepts))
	clock := new(atomic.Int64)
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	_, gw := startGatewayWith(t, cfg, func(d *Deps) { d.Now = func() time.Time { return time.Unix(0, clock.Load()) } })
	var waits []time.Duration
	for range 3 {
		res, err := gw.JobExecutor().Execute(t.Context(), &jobs.Job{ID: "j", Path: "/v1/chat/completions", Model: "m1", Class: "batch", Body: []byte(chatBody)})
		if err != nil || res.StatusCode != http.StatusBadGateway {
			t.Fatalf("job run: %d %v, want a 502", res.StatusCode, err)
		}
		waits = append(waits, res.RetryAfter)
	}
	if waits[0] != time.Second || waits[2] != 10*time.Second {
		t.Fatalf("the job's 502s advised %v, want 1s first and 10s once the backend is ejected (%d connections)", waits, accepts.Load())
	}
}
