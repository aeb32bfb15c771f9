package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// TestStoreBoundRefusesNewWork fills a bounded store with files: past the
// admission line new files, jobs and batches are refused with
// ErrStoreFull, a job accepted before still runs and stores its result,
// and deleting a file lets uploads in again.
func TestStoreBoundRefusesNewWork(t *testing.T) {
	const limit = 512 << 10
	srv := startBoundedServer(t, limit)
	o := testOptions(srv.ClientURL())
	o.MaxStoreBytes, o.MaxFileBytes = limit, 64<<10
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	s := openStore(t, o)
	ctx := context.Background()

	accepted, _, err := s.Submit(ctx, Spec{Tenant: "acme", Path: "/v1/chat/completions", Model: "m", Body: []byte(`{"model":"m"}`)})
	if err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte("x"), 48<<10)
	var files []*File
	for len(files) < 50 {
		f, err := s.PutFile(ctx, File{Filename: "in.jsonl", Purpose: "batch", Tenant: "acme"}, bytes.NewReader(content))
		if errors.Is(err, ErrStoreFull) {
			break
		}
		if err != nil {
			t.Fatalf("upload %d: %v", len(files), err)
		}
		files = append(files, f)
	}
	// 90% of 512 KiB over 48 KiB files: 9 fit before the line.
	if len(files) < 8 || len(files) > 10 {
		t.Fatalf("%d files stored before the store was full; want about 9", len(files))
	}
	u, err := s.StoreUsage(ctx)
	if err != nil || u.Bytes < u.AdmitLimit || u.Bytes > limit || u.Limit != limit {
		t.Fatalf("StoreUsage = %+v, %v; want at the admission line %d, under %d", u, err, limit-limit/10, limit)
	}
	if _, _, err := s.Submit(ctx, Spec{Tenant: "acme", Path: "/v1/chat/completions", Model: "m", Body: []byte(`{"model":"m"}`)}); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("Submit on a full store: %v; want ErrStoreFull", err)
	}
	_, err = s.CreateBatch(ctx, BatchSpec{Tenant: "acme", InputFileID: files[0].ID, Endpoint: "/v1/chat/completions",
		CompletionWindow: "24h", Requests: []BatchRequest{{CustomID: "a", Method: "POST", URL: "/v1/chat/completions", Model: "m", Body: []byte(`{}`)}}})
	if !errors.Is(err, ErrStoreFull) {
		t.Fatalf("CreateBatch on a full store: %v; want ErrStoreFull", err)
	}

	// The job accepted before the store filled runs and its result (2 KiB)
	// is stored in the headroom.
	result := []byte(`{"text":"` + strings.Repeat("r", 2<<10) + `"}`)
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		calls.Add(1)
		return Result{StatusCode: 200, Body: result}, nil
	})})
	eventually(t, "the accepted job to finish", func() bool { return mustJob(t, s, "acme", accepted.ID).Status.Terminal() })
	if j := mustJob(t, s, "acme", accepted.ID); j.Status != StatusSucceeded || j.Result == nil || !json.Valid(j.Result.Body) ||
		len(j.Result.Body) != len(result) {
		t.Fatalf("accepted job = %+v; want succeeded with its result", j)
	}

	if err := s.DeleteFile(ctx, "acme", files[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutFile(ctx, File{Filename: "again.jsonl", Purpose: "batch", Tenant: "acme"}, bytes.NewReader(content)); err != nil {
		t.Fatalf("upload after a delete freed space: %v", err)
	}

	for name, want := range map[string]float64{"sluice_jobs_store_limit_bytes": limit} {
		if got := promtest.Value(t, reg, name, ""); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := promtest.Value(t, reg, "sluice_jobs_store_refused_total", "budget"); got != 3 {
		t.Errorf(`sluice_jobs_store_refused_total{reason="budget"} = %v, want 3 (a file, a job, a batch)`, got)
	}
	if got := promtest.Value(t, reg, "sluice_jobs_store_bytes", ""); got <= 0 || got > limit {
		t.Errorf("sluice_jobs_store_bytes = %v, want in (0, %d]", got, limit)
	}
}

// TestStoreServerLimitIsStoreFull: with no budget of the gateway's own
// (an external NATS whose account or server bounds the store), JetStream's
// refusal is ErrStoreFull, not an internal error, and a file can still be
// deleted at the hard limit (its delete marker needs room).
func TestStoreServerLimitIsStoreFull(t *testing.T) {
	const limit = 256 << 10
	srv := startBoundedServer(t, limit)
	o := testOptions(srv.ClientURL())
	o.MaxFileBytes = 64 << 10
	s := openStore(t, o)
	ctx := context.Background()
	content := bytes.Repeat([]byte("x"), 40<<10)
	var files []*File
	for range 2 {
		f, err := s.PutFile(ctx, File{Filename: "in.jsonl", Purpose: "batch", Tenant: "acme"}, bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	// Jobs with 40 KiB bodies until JetStream refuses: the last body
	// stored took the store past the server's limit (it checks before a
	// write, not its size), where it refuses every write.
	body := []byte(`{"model":"m","pad":"` + strings.Repeat("p", 40<<10) + `"}`)
	var accepted []string
	submit := func() error {
		j, _, err := s.Submit(ctx, Spec{Tenant: "acme", Path: "/v1/chat/completions", Model: "m", Body: body})
		if err == nil {
			accepted = append(accepted, j.ID)
		}
		return err
	}
	for n := 0; ; n++ {
		err := submit()
		if errors.Is(err, ErrStoreFull) {
			break
		}
		if err != nil {
			t.Fatalf("job %d: %v", n, err)
		}
		if n > 20 {
			t.Fatalf("%d jobs of 40 KiB stored under a %d-byte server limit", n, limit)
		}
	}
	for _, f := range files {
		if err := s.DeleteFile(ctx, "acme", f.ID); err != nil {
			t.Fatalf("deleting a file at the server's limit: %v", err)
		}
	}
	if err := submit(); err != nil {
		t.Fatalf("a job after deletes freed space: %v", err)
	}
	// Every job accepted, before the limit and after, runs to its result.
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 4, Executor: okExec(&calls)})
	for _, id := range accepted {
		eventually(t, "job "+id+" to finish", func() bool { return mustJob(t, s, "acme", id).Status.Terminal() })
		if j := mustJob(t, s, "acme", id); j.Status != StatusSucceeded {
			t.Fatalf("accepted job %s: %+v", id, j)
		}
	}
}

// A scan that began before a batch's index entry was written may list it
// all the same: it is then counted once, not as seen and pending (seen
// on a scan's heels read one batch too many, once, in a -race CI run).
func TestActiveBatchListedByAnEarlierScanCountsOnce(t *testing.T) {
	var a activeBatches
	if err := a.reserve("b1", "h1", 5, 2); err != nil {
		t.Fatal(err)
	}
	scan := a.beginScan()
	a.indexed("b1") // written after the scan began, before it listed
	a.seen(scan, []string{"t.h1.b1"})
	if n, _ := a.counts(); n != 1 {
		t.Fatalf("%d active batches, want 1", n)
	}
}
