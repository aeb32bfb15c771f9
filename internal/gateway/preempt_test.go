package gateway

import (
	"context"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/sim"
)

// Queued jobs fill a full pool; live requests then preempt them instead of
// waiting, are served at once, and the preempted jobs neither count against
// the backend's health nor fail: they run again.
//
// "At once" is judged without a clock: a job lasts far longer (3000 tokens
// at 10ms a step: 30s and more) than a live request's objective (20s), so a
// live request that waited for a job to end instead of preempting it would
// be shed or refused at its deadline. A loaded machine only slows the
// preemption, by far less than 20s (with the default objective, 2s, and its
// delay target, 500ms, it was the wall clock that judged).
func TestLiveTrafficPreemptsJobs(t *testing.T) {
	s := sim.New(sim.Config{Model: "m1", Slots: 2, DecodeStepBase: 10 * time.Millisecond})
	defer s.Close()
	be := httptest.NewServer(s)
	defer be.Close()
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 2
	cfg.Admission.MaxWait = config.Duration(20 * time.Second)
	cfg.Admission.DelayTarget = cfg.Admission.MaxWait // not a quarter of it: a preemption gets the whole 20s
	srv, gw := startGateway(t, cfg)
	q := gw.Runtime().Pools["m1"].queue

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 4 { // more workers than slots: the pool stays full of jobs
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if gw.JobGate().Wait(ctx, "m1") != nil {
					return
				}
				res, err := gw.JobExecutor().Execute(ctx, &jobs.Job{ID: "j", Path: "/v1/chat/completions", Model: "m1", Class: "batch",
					Body: []byte(`{"model":"m1","max_tokens":3000,"messages":[{"role":"user","content":"hi"}]}`)})
				// A preempted job is run again inside Execute; none ends
				// within the test but by its cancellation (an error).
				if err == nil && !refusedForCapacity(res.StatusCode) {
					failed.Add(1)
				}
			}
		}()
	}
	poolFull := func() bool { return q.Stats().InUse == 2 }
	for i := range 8 {
		waitFor(t, poolFull) // each live request meets a pool full of jobs (or of jobs and the last live one, leaving)
		resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}]}`)
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("live request %d beside jobs: %d %s", i, resp.StatusCode, body)
		}
	}
	// The preempted jobs run again: the pool fills up with them.
	waitFor(t, poolFull)
	stop()
	wg.Wait()
	if q.Preempted() == 0 {
		t.Fatal("no job was preempted although the pool was full of them")
	}
	if st := q.Stats(); st.Capacity != 2 || sumRejected(st.Rejected) != 0 {
		t.Fatalf("after preemptions: capacity %d (backend must stay healthy), rejections %v", st.Capacity, st.Rejected)
	}
	if failed.Load() != 0 {
		t.Fatalf("jobs: %d failed", failed.Load())
	}
}

func sumRejected(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
