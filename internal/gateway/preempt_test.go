package gateway

import (
	"context"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/sim"
)

// Queued jobs fill a full pool; live requests then preempt them instead of
// waiting, are served at once, and the preempted jobs neither count against
// the backend's health nor fail: they run again.
func TestLiveTrafficPreemptsJobs(t *testing.T) {
	s := sim.New(sim.Config{Model: "m1", Slots: 2, DecodeStepBase: 10 * time.Millisecond})
	defer s.Close()
	be := httptest.NewServer(s)
	defer be.Close()
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 2
	srv, gw := startGateway(t, cfg)
	q := gw.Runtime().Pools["m1"].queue

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var done, failed atomic.Int32
	for range 4 { // more workers than slots: the pool stays full of jobs
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if gw.JobGate().Wait(ctx, "m1") != nil {
					return
				}
				res, err := gw.JobExecutor().Execute(ctx, &jobs.Job{ID: "j", Path: "/v1/chat/completions", Model: "m1", Class: "batch",
					Body: []byte(`{"model":"m1","max_tokens":40,"messages":[{"role":"user","content":"hi"}]}`)})
				switch {
				case err == nil && res.StatusCode == 200:
					done.Add(1)
				case err == nil && !refusedForCapacity(res.StatusCode):
					failed.Add(1)
				}
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for q.Stats().InUse < 2 {
		if time.Now().After(deadline) {
			t.Fatal("jobs never filled the pool")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := range 8 {
		start := time.Now()
		resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}]}`)
		readAll(t, resp)
		if took := time.Since(start); resp.StatusCode != 200 || took > 2*time.Second {
			t.Fatalf("live request %d beside jobs: %d in %v", i, resp.StatusCode, took)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	wg.Wait()
	if q.Preempted() == 0 {
		t.Fatal("no job was preempted although the pool was full of them")
	}
	if st := q.Stats(); st.Capacity != 2 || sumRejected(st.Rejected) != 0 {
		t.Fatalf("after preemptions: capacity %d (backend must stay healthy), rejections %v", st.Capacity, st.Rejected)
	}
	if failed.Load() != 0 || done.Load() == 0 {
		t.Fatalf("jobs: %d done, %d failed", done.Load(), failed.Load())
	}
}

func sumRejected(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
