package jobs

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A KV block damaged in place while the server runs (during a disk
// fault's episode, the likeliest time for it) was caught only at the next
// process start: a recovery's restart started the new server on it
// without the start's check, and nats-server looped on the first write to
// a key whose last record was in the damaged part, every later job call
// waiting. The recovery's restart now runs the same check: the block is
// cut, its original kept under damaged-<time>/ (the injected clock's
// time), the damage reported, and the writes complete.
func TestRecoveryRestartCutsABlockDamagedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	clock.Store(t0.UnixNano())
	log := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// SyncAlways: each write is on disk when it is acknowledged, so the
	// damage below lands on the records, not before their flush.
	e, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1, RecoverEvery: time.Hour, SyncAlways: true,
		Logger: logger, Now: func() time.Time { return time.Unix(0, clock.Load()).UTC() }})
	if err != nil {
		t.Fatal(err)
	}
	// Stopped within a hang guard: on a server wedged on the block (the
	// old code) its stop waits on the same lock, for good.
	defer func() {
		stopped := make(chan struct{})
		go func() { e.Shutdown(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(time.Minute):
			t.Error("the server did not stop within a minute (wedged on the damaged block?)")
		}
	}()
	o := testOptions(e.ClientURL())
	o.Embedded, o.Logger, o.NoTracker = e, logger, true
	s, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.CloseWithin(cctx); err != nil {
			t.Errorf("closing the store: %v", err)
		}
	}()

	ctx := context.Background()
	var ids []string
	for i := range 40 {
		j, _, err := s.Submit(ctx, spec("acme"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
		if _, err := s.jobs.Put(ctx, leaseKey, []byte(strings.Repeat("x", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	blk := streamFile(dir, jobsKVStream, "msgs", "1.blk")
	before, err := os.Stat(blk)
	if err != nil {
		t.Fatal(err)
	}
	damageInPlace(t, blk) // under the running server, its length unchanged

	// The fault, as nats-server's first line about a failed write begins
	// it, and its recovery a minute later (the directory takes writes).
	e.noteServerLine("Critical write error: test")
	clock.Store(t0.Add(time.Minute).UnixNano())
	if !e.TryRecover() {
		t.Fatalf("not recovered: %v", e.StoreFault())
	}
	eventually(t, "the store reconnected to the new server", func() bool {
		return s.nc.IsConnected() && s.nc.ConnectedServerId() == e.server().ID()
	})

	// Before, this write never returned: nats-server spinning in
	// firstSeqForSubj under the stream's lock. The bound ends the test's
	// wait, not the loop.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	_, err = s.jobs.Put(wctx, leaseKey, []byte("after"))
	cancel()
	if err != nil {
		t.Fatalf("writing %s after the recovery: %v (nats-server wedged on the damaged block?)", leaseKey, err)
	}
	for _, id := range ids {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := s.CancelJob(cctx, "acme", id)
		cancel()
		if err != nil && !isNotFound(err) {
			t.Fatalf("cancelling %s after the recovery: %v (nats-server wedged on the damaged block?)", id, err)
		}
	}
	if lostJobs(t, s, ids) == 0 {
		t.Fatal("no job lost: the damage did not take")
	}
	if _, _, err := s.Submit(ctx, spec("acme")); err != nil {
		t.Fatalf("a job after the recovery: %v", err)
	}

	d := damageOf(e.StoreDamage(), jobsKVStream)
	if d == nil || !strings.Contains(d.Problem, "cut there") || !strings.Contains(d.Problem, "at a recovery restart at 2026-12-06T12:01:00Z") {
		t.Fatalf("damage %+v: want the block's cut reported as the recovery's (log: %s)", d, log.String())
	}
	if !strings.Contains(log.String(), "job store found damaged on disk at a recovery restart") {
		t.Errorf("no ERROR line about the damage found at the recovery: %s", log.String())
	}
	kept := filepath.Join(dir, "damaged-20261206T120100Z", jobsKVStream, "msgs", "1.blk")
	if fi, err := os.Stat(kept); err != nil || fi.Size() != before.Size() {
		t.Errorf("the original block at %s: %v, size want %d", kept, err, before.Size())
	}
}
