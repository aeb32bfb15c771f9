package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// TestAcceptedBatchesFinishOnABoundedStore creates batches on a bounded
// embedded store until one is refused, then runs them with answers the
// size of their requests: every accepted batch completes, and the store
// never refuses a line's start or result. Before the reservation the
// creations ran to the admission line with inputs alone, and the
// accepted batches' results met JetStream's hard bound: starts and
// results refused, the batches stalled in progress.
func TestAcceptedBatchesFinishOnABoundedStore(t *testing.T) {
	const limit = 1 << 20
	srv := startBoundedServer(t, limit)
	o := testOptions(srv.ClientURL())
	o.MaxStoreBytes = limit
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	s := openStore(t, o)
	ctx := context.Background()

	pad := strings.Repeat("p", 1000)
	spec := func(n int) BatchSpec {
		sp := BatchSpec{Tenant: "acme", InputFileID: "file-in", Endpoint: "/v1/chat/completions", CompletionWindow: "24h"}
		for i := range n {
			sp.Requests = append(sp.Requests, BatchRequest{CustomID: fmt.Sprintf("req-%d", i), Method: "POST",
				URL: sp.Endpoint, Model: "m1", Body: json.RawMessage(fmt.Sprintf(`{"model":"m1","n":%d,"pad":%q}`, i, pad))})
		}
		return sp
	}
	var accepted []*Batch
	for len(accepted) < 40 {
		b, err := s.CreateBatch(ctx, spec(40))
		if errors.Is(err, ErrStoreFull) {
			break
		}
		if err != nil {
			t.Fatalf("batch %d: %v", len(accepted), err)
		}
		accepted = append(accepted, b)
	}
	if len(accepted) == 0 || len(accepted) == 40 {
		t.Fatalf("%d batches accepted; want the store to refuse one after a few", len(accepted))
	}
	t.Logf("%d batches of 40 accepted", len(accepted))

	answer := []byte(fmt.Sprintf(`{"pad":%q}`, pad)) // the size of the request
	startWorker(t, s, WorkerOptions{Concurrency: 4, Classes: []string{"batch"}, Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		return Result{StatusCode: 200, Body: answer}, nil
	})})
	refused := func() uint64 { return s.stats.startsRefused.Load() + s.stats.resultsRefused.Load() }
	done := func() bool {
		for _, a := range accepted {
			b, err := s.Batch(ctx, "acme", a.ID)
			if err != nil {
				t.Fatal(err)
			}
			if b.Status != batchCompleted {
				return false
			}
		}
		return true
	}
	eventually(t, "every accepted batch to complete, or the store to refuse a line", func() bool { return refused() > 0 || done() })
	if n := refused(); n > 0 {
		t.Fatalf("the full store refused %d starts or results of accepted batches; want room reserved for them", n)
	}
	for _, a := range accepted {
		b := waitBatch(t, s, "acme", a.ID, batchCompleted)
		if b.RequestCounts.Completed != 40 || len(readLines(t, s, "acme", b.OutputFileID)) != 40 {
			t.Fatalf("batch %s = %+v; want 40 lines completed in its output file", b.ID, b.RequestCounts)
		}
	}
	if u, err := s.StoreUsage(ctx); err == nil {
		t.Logf("store after the batches: %d of %d bytes (admission line %d)", u.Bytes, u.Limit, u.AdmitLimit)
	}
	// Finalized, the batches reserve nothing; the refusal was counted.
	eventually(t, "the reservations to end", func() bool { return s.reserved.sum() == 0 })
	if v := promtest.Value(t, reg, "sluice_jobs_store_refused_total", "reserved"); v < 1 {
		t.Fatalf("sluice_jobs_store_refused_total{reason=reserved} = %v; want the refusal counted", v)
	}
}

// TestBatchCountsRefusedAreSaidOnce keeps a batch's counts from being
// written (its bucket's stream bounded at its size, refusing new bytes
// as a full store does) while one of its lines has finished: the tracker
// tries each TrackInterval, and says so in one warning line when the
// failures start and one info line when a write succeeds again, the
// failures counted. It logged a warning at every try before.
func TestBatchCountsRefusedAreSaidOnce(t *testing.T) {
	srv := startServer(t, t.TempDir())
	o := testOptions(srv.ClientURL())
	logs := &logLines{}
	o.Logger = slog.New(logs)
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	s := openStore(t, o)
	ctx := context.Background()
	b, err := s.CreateBatch(ctx, batchSpec("acme", 2))
	if err != nil {
		t.Fatal(err)
	}

	// The batch bucket takes no more bytes.
	st, err := s.js.Stream(ctx, "KV_"+batchBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bounded := info.Config
	bounded.MaxBytes, bounded.Discard = int64(info.State.Bytes), jetstream.DiscardNew
	if _, err := s.js.UpdateStream(ctx, bounded); err != nil {
		t.Fatal(err)
	}

	// Line 0 finishes (its record written as a worker would), with a
	// usage that makes the batch's record longer.
	key := batchJobKey(b.ID, 0)
	e, err := s.jobs.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var r jobRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		t.Fatal(err)
	}
	r.Job.Status, r.Job.Result = StatusSucceeded, &Result{StatusCode: 200, Body: json.RawMessage(
		`{"usage":{"prompt_tokens":1234567,"completion_tokens":1234567,"total_tokens":2469134}}`)}
	done, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.jobs.Update(ctx, key, done, e.Revision()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "five refused count writes", func() bool { return s.stats.batchUpdatesRefused.Load() >= 5 })
	if n := logs.count(slog.LevelWarn, "updating batch counts"); n != 1 {
		t.Fatalf("%d warning lines about the batch's counts after %d refused writes; want 1: %q",
			n, s.stats.batchUpdatesRefused.Load(), logs.at(slog.LevelWarn))
	}

	// Room again: the counts are written, said once.
	if _, err := s.js.UpdateStream(ctx, info.Config); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the counts written", func() bool {
		got, err := s.Batch(ctx, "acme", b.ID)
		return err == nil && got.RequestCounts.Completed == 1
	})
	eventually(t, "the info line", func() bool { return logs.count(slog.LevelInfo, "batch counts written again") == 1 })
	if n := logs.count(slog.LevelWarn, "updating batch counts"); n != 1 {
		t.Fatalf("%d warning lines about the batch's counts; want 1", n)
	}
	if v := promtest.Value(t, reg, "sluice_jobs_batch_updates_failed_total", ""); v < 5 {
		t.Fatalf("sluice_jobs_batch_updates_failed_total = %v; want the refused writes counted", v)
	}
}

// TestReservationsPrune: a batch no scan lists and no creation here
// holds loses its reservation (an actor that stopped unfinished left it,
// and another process finalized the batch); the others keep theirs.
func TestReservationsPrune(t *testing.T) {
	var r reservations
	r.set("listed", 100)
	r.set("gone", 40)
	r.set("creating", 7)
	r.prune(func(id string) bool { return id != "gone" })
	if got := r.sum(); got != 107 {
		t.Fatalf("sum after the prune = %d; want 107", got)
	}
	r.drop("listed")
	if got := r.sum(); got != 7 {
		t.Fatalf("sum after the drop = %d; want 7", got)
	}
}
