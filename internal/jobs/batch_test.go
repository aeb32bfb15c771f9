package jobs

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func batchSpec(tenant string, n int) BatchSpec {
	sp := BatchSpec{Tenant: tenant, InputFileID: "file-in", Endpoint: "/v1/chat/completions",
		CompletionWindow: "24h", Metadata: map[string]string{"team": "a"}}
	for i := range n {
		sp.Requests = append(sp.Requests, BatchRequest{CustomID: fmt.Sprintf("req-%d", i), Method: "POST",
			URL: sp.Endpoint, Model: "m1", Body: json.RawMessage(fmt.Sprintf(`{"model":"m1","n":%d}`, i))})
	}
	return sp
}

func waitBatch(t *testing.T, s *Store, tenant, id, status string) *Batch {
	t.Helper()
	var b *Batch
	eventually(t, "batch "+status, func() bool {
		var err error
		b, err = s.Batch(context.Background(), tenant, id)
		if err != nil {
			t.Fatal(err)
		}
		return b.Status == status
	})
	return b
}

// readLines returns a JSONL file's lines, decoded.
func readLines(t *testing.T, s *Store, tenant string, id *string) []resultLine {
	t.Helper()
	if id == nil {
		return nil
	}
	f, err := s.File(context.Background(), tenant, *id)
	if err != nil {
		t.Fatal(err)
	}
	if f.Purpose != "batch_output" || !strings.HasSuffix(f.Filename, ".jsonl") {
		t.Fatalf("result file = %+v", f)
	}
	rc, err := s.FileContent(context.Background(), tenant, *id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var lines []resultLine
	sc := bufio.NewScanner(rc)
	for sc.Scan() {
		var l resultLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func customIDs(ls []resultLine) []string {
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.CustomID)
	}
	return ids
}

// mixedExec answers request n: n%10==7 with a 400, n%10==3 with a
// transport error every time, others 200.
func mixedExec(calls *atomic.Int64) Executor {
	return execFunc(func(ctx context.Context, j *Job) (Result, error) {
		calls.Add(1)
		var body struct{ N int }
		_ = json.Unmarshal(j.Body, &body)
		switch body.N % 10 {
		case 7:
			return Result{StatusCode: 400, RequestID: "r", Body: []byte(`{"error":{"message":"bad"}}`)}, nil
		case 3:
			return Result{}, errors.New("connection refused")
		}
		return Result{StatusCode: 200, RequestID: "r", Body: []byte(fmt.Sprintf(`{"n":%d}`, body.N))}, nil
	})
}

func TestBatchCompletes(t *testing.T) {
	s, _ := newStore(t, func(o *Options) { o.MaxAttempts = 2 })
	ctx := context.Background()
	b, err := s.CreateBatch(ctx, batchSpec("acme", 50))
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != batchInProgress || b.RequestCounts.Total != 50 || b.InProgressAt == nil || b.ExpiresAt == nil ||
		*b.ExpiresAt != b.CreatedAt+24*3600 || !strings.HasPrefix(b.ID, "batch_") {
		t.Fatalf("created batch = %+v", b)
	}
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 4, Classes: []string{"batch"}, Executor: mixedExec(&calls)})
	b = waitBatch(t, s, "acme", b.ID, batchCompleted)
	if b.RequestCounts != (BatchCounts{Total: 50, Completed: 40, Failed: 10}) || b.CompletedAt == nil ||
		b.FinalizingAt == nil || b.OutputFileID == nil || b.ErrorFileID == nil {
		t.Fatalf("completed batch = %+v", b)
	}
	out := readLines(t, s, "acme", b.OutputFileID)
	if len(out) != 40 {
		t.Fatalf("%d output lines, want 40", len(out))
	}
	prev := -1
	seen := map[string]bool{}
	for _, l := range out {
		n, _ := strconv.Atoi(strings.TrimPrefix(l.CustomID, "req-"))
		if n <= prev || n%10 == 3 || n%10 == 7 {
			t.Fatalf("output lines out of order or misplaced: %v", customIDs(out))
		}
		prev = n
		if !strings.HasPrefix(l.ID, "batch_req_job_") || seen[l.ID] || l.Error != nil || l.Response == nil ||
			l.Response.StatusCode != 200 || string(l.Response.Body) != fmt.Sprintf(`{"n":%d}`, n) {
			t.Fatalf("output line = %+v", l)
		}
		seen[l.ID] = true
	}
	errs := readLines(t, s, "acme", b.ErrorFileID)
	if len(errs) != 10 {
		t.Fatalf("%d error lines, want 10", len(errs))
	}
	for i, l := range errs {
		n, _ := strconv.Atoi(strings.TrimPrefix(l.CustomID, "req-"))
		want := []int{3, 7}[i%2] + 10*(i/2)
		if n != want {
			t.Fatalf("error lines in order %v", customIDs(errs))
		}
		switch n % 10 {
		case 7:
			if l.Response == nil || l.Response.StatusCode != 400 || l.Error != nil {
				t.Fatalf("400 line = %+v", l)
			}
		case 3:
			if l.Response != nil || l.Error == nil || l.Error.Code != "max_attempts" || strings.Contains(l.Error.Message, "connection refused") {
				t.Fatalf("failed line = %+v", l)
			}
		}
	}
	// 40 + 5 + 5 failing twice.
	if calls.Load() != 55 {
		t.Fatalf("%d executions, want 55", calls.Load())
	}
}

func TestBatchFinalizedByAnotherProcess(t *testing.T) {
	srv := startServer(t, t.TempDir())
	wo := testOptions(srv.ClientURL())
	wo.NoTracker = true
	workerOnly := openStore(t, wo)
	ctx := context.Background()
	b, err := workerOnly.CreateBatch(ctx, batchSpec("acme", 20))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	startWorker(t, workerOnly, WorkerOptions{Concurrency: 4, Executor: okExec(&calls)})
	eventually(t, "all jobs to run", func() bool { return calls.Load() == 20 })
	if got, _ := workerOnly.Batch(ctx, "acme", b.ID); got.Status != batchInProgress {
		t.Fatalf("without a tracker the batch is %s", got.Status)
	}
	// Two trackers that ran none of the jobs race to finalize it.
	t1 := openStore(t, testOptions(srv.ClientURL()))
	t2 := openStore(t, testOptions(srv.ClientURL()))
	done := waitBatch(t, t1, "acme", b.ID, batchCompleted)
	if done.ErrorFileID != nil || done.RequestCounts.Completed != 20 {
		t.Fatalf("batch = %+v", done)
	}
	lines := readLines(t, t2, "acme", done.OutputFileID)
	if len(lines) != 20 {
		t.Fatalf("%d lines, want 20", len(lines))
	}
	for i, l := range lines {
		if l.CustomID != fmt.Sprintf("req-%d", i) {
			t.Fatalf("lines = %v", customIDs(lines))
		}
	}
	if again, _ := t2.Batch(ctx, "acme", b.ID); *again.OutputFileID != *done.OutputFileID || *again.CompletedAt != *done.CompletedAt {
		t.Fatalf("trackers disagree: %+v vs %+v", again, done)
	}
}

func TestBatchCancel(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	b, err := s.CreateBatch(ctx, batchSpec("acme", 20))
	if err != nil {
		t.Fatal(err)
	}
	running := make(chan struct{}, 2)
	release := make(chan struct{})
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 2, Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		calls.Add(1)
		running <- struct{}{}
		<-release
		return Result{StatusCode: 200, Body: []byte(`{}`)}, nil
	})})
	<-running
	<-running
	c, err := s.CancelBatch(ctx, "acme", b.ID)
	if err != nil || c.Status != batchCancelling || c.CancellingAt == nil {
		t.Fatalf("CancelBatch: %+v, %v", c, err)
	}
	// Queued jobs are cancelled while the two running ones go on.
	eventually(t, "queued jobs cancelled", func() bool {
		n := 0
		for i := range 20 {
			if r, _, _ := s.getJob(ctx, batchJobKey(b.ID, i)); r.Job.Status == StatusCancelled {
				n++
			}
		}
		return n == 18
	})
	if got, _ := s.Batch(ctx, "acme", b.ID); got.Status != batchCancelling {
		t.Fatalf("batch %s while jobs run, want cancelling", got.Status)
	}
	close(release)
	done := waitBatch(t, s, "acme", b.ID, batchCancelled)
	// The 18 lines that never ran are in the error file, batch_cancelled
	// (OpenAI's code for them): the two files account for all 20.
	if done.CancelledAt == nil || done.RequestCounts != (BatchCounts{Total: 20, Completed: 2, Failed: 18}) || done.ErrorFileID == nil {
		t.Fatalf("cancelled batch = %+v", done)
	}
	out := readLines(t, s, "acme", done.OutputFileID)
	if len(out) != 2 {
		t.Fatalf("%d output lines, want the 2 that ran", len(out))
	}
	errs := readLines(t, s, "acme", done.ErrorFileID)
	ids := map[string]bool{}
	for _, l := range append(out, errs...) {
		ids[l.CustomID] = true
	}
	if len(errs) != 18 || len(ids) != 20 {
		t.Fatalf("%d error lines, %d custom_ids in both files; want 18 and 20", len(errs), len(ids))
	}
	for _, l := range errs {
		if l.Response != nil || l.Error == nil || l.Error.Code != "batch_cancelled" || !strings.HasPrefix(l.ID, "batch_req_") {
			t.Fatalf("error line = %+v", l)
		}
	}
	if _, err := s.CancelBatch(ctx, "acme", b.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("cancelling a cancelled batch: %v", err)
	}
	if calls.Load() != 2 {
		t.Fatalf("%d executions, want 2", calls.Load())
	}
}

// countGate admits n waits for a model, then holds the rest.
type countGate struct {
	left atomic.Int64
	hold chan struct{}
}

func (g *countGate) Wait(ctx context.Context, model string) error {
	if model == "" || g.left.Add(-1) >= 0 {
		return nil
	}
	select {
	case <-g.hold:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestBatchExpires(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, func(o *Options) { o.Now = clk.Now })
	ctx := context.Background()
	sp := batchSpec("acme", 10)
	sp.CompletionWindow = "1h"
	b, err := s.CreateBatch(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	g := &countGate{hold: make(chan struct{})}
	g.left.Store(3)
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Gate: g, Executor: okExec(&calls)})
	eventually(t, "three jobs", func() bool {
		got, _ := s.Batch(ctx, "acme", b.ID)
		return got.RequestCounts.Completed == 3
	})
	clk.Advance(time.Hour)
	done := waitBatch(t, s, "acme", b.ID, batchExpired)
	if done.ExpiredAt == nil || *done.ExpiredAt != b.CreatedAt+3600 || done.RequestCounts != (BatchCounts{Total: 10, Completed: 3, Failed: 7}) {
		t.Fatalf("expired batch = %+v", done)
	}
	if out := readLines(t, s, "acme", done.OutputFileID); len(out) != 3 {
		t.Fatalf("%d output lines, want 3", len(out))
	}
	errs := readLines(t, s, "acme", done.ErrorFileID)
	if len(errs) != 7 {
		t.Fatalf("%d error lines, want 7", len(errs))
	}
	for _, l := range errs {
		if l.Response != nil || l.Error == nil || l.Error.Code != "batch_expired" {
			t.Fatalf("error line = %+v", l)
		}
	}
	if calls.Load() != 3 {
		t.Fatalf("%d executions, want 3", calls.Load())
	}
}

func TestListBatches(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, func(o *Options) { o.Now = clk.Now })
	ctx := context.Background()
	var ids []string
	for range 5 {
		b, err := s.CreateBatch(ctx, batchSpec("acme", 1))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, b.ID)
		clk.Advance(time.Second)
	}
	if _, err := s.CreateBatch(ctx, batchSpec("globex", 1)); err != nil {
		t.Fatal(err)
	}
	var got []string
	after := ""
	for page := 0; ; page++ {
		bs, more, err := s.ListBatches(ctx, "acme", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			got = append(got, b.ID)
		}
		if !more {
			break
		}
		if len(bs) != 2 || page > 3 {
			t.Fatalf("page %d: %d batches, more=%v", page, len(bs), more)
		}
		after = bs[len(bs)-1].ID
	}
	want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("listed %v, want newest first %v", got, want)
	}
	if _, err := s.Batch(ctx, "globex", ids[0]); !isNotFound(err) {
		t.Fatalf("another tenant's batch: %v", err)
	}
	if _, err := s.CancelBatch(ctx, "globex", ids[0]); !isNotFound(err) {
		t.Fatalf("cancelling another tenant's batch: %v", err)
	}
}

func TestEnqueueTenThousand(t *testing.T) {
	s, _ := newStore(t, func(o *Options) { o.NoTracker = true })
	sp := batchSpec("acme", 10_000)
	start := time.Now()
	b, err := s.CreateBatch(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("enqueued 10,000 batch jobs in %s", time.Since(start))
	info, err := s.js.Stream(context.Background(), workStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 10_000 || b.RequestCounts.Total != 10_000 {
		t.Fatalf("%d messages for a batch of %d", n, b.RequestCounts.Total)
	}
	last, _, err := s.getJob(context.Background(), batchJobKey(b.ID, 9_999))
	if err != nil || last.Job.CustomID != "req-9999" || last.Index != 9_999 {
		t.Fatalf("last job %+v, %v", last, err)
	}
	body, err := s.bodies.Get(context.Background(), batchJobKey(b.ID, 9_999))
	if err != nil || string(body.Value()) != `{"model":"m1","n":9999}` {
		t.Fatalf("last body %v", err)
	}
}

// A tracker that died half-way through finalization (target recorded,
// output file written, batch not completed) is taken over by another.
func TestFinalizationResumesAfterCrash(t *testing.T) {
	srv := startServer(t, t.TempDir())
	o := testOptions(srv.ClientURL())
	o.NoTracker = true
	worker := openStore(t, o)
	ctx := context.Background()
	b, err := worker.CreateBatch(ctx, batchSpec("acme", 10))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	startWorker(t, worker, WorkerOptions{Concurrency: 2, Executor: okExec(&calls)})
	eventually(t, "all jobs", func() bool { return calls.Load() == 10 })
	// The executor returning is not the job's record being terminal: the
	// worker stores the result after it. Wait for the records.
	eventually(t, "all job records terminal", func() bool {
		for i := range 10 {
			r, _, err := worker.getJob(ctx, batchJobKey(b.ID, i))
			if err != nil || !r.Job.Status.Terminal() {
				return false
			}
		}
		return true
	})
	// What the dead tracker got done: the target, the claim on the files,
	// and the output file.
	key := batchKey("acme", b.ID)
	if _, _, err := worker.updateBatch(ctx, key, func(r *batchRecord) error {
		r.Target, r.Batch.Status, r.Batch.FinalizingAt = batchCompleted, batchFinalizing, ptr(int64(1))
		r.Writer = &fileClaim{Owner: worker.owner, Until: worker.now().Add(time.Minute).UnixMilli()}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dead := &actor{s: worker, id: b.ID, key: key, jobs: map[int]*jobState{}, total: 10, ready: true}
	for i := range 10 {
		r, rev, err := worker.getJob(ctx, batchJobKey(b.ID, i))
		if err != nil {
			t.Fatal(err)
		}
		dead.jobs[i] = &jobState{rev: rev, status: r.Job.Status, kind: kindOf(r)}
		dead.terminal++
	}
	rec, _, _ := worker.getBatch(ctx, key)
	outIdx, errIdx := dead.lineIndexes()
	if _, _, err := dead.writeFiles(ctx, rec, outIdx, errIdx); err != nil {
		t.Fatal(err)
	}
	// It died a lease ago.
	if _, _, err := worker.updateBatch(ctx, key, func(r *batchRecord) error {
		r.Writer.Until = 1
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	tracker := openStore(t, testOptions(srv.ClientURL()))
	done := waitBatch(t, tracker, "acme", b.ID, batchCompleted)
	if done.OutputFileID == nil || *done.OutputFileID != batchFileID(b.ID, "output") || *done.FinalizingAt != 1 {
		t.Fatalf("batch = %+v", done)
	}
	if lines := readLines(t, tracker, "acme", done.OutputFileID); len(lines) != 10 {
		t.Fatalf("%d lines, want 10", len(lines))
	}
}
