package jobs

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// lineLog keeps a logger's messages at warn and above.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }
func (l *lineLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Level.String()+" "+r.Message)
	return nil
}
func (l *lineLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *lineLog) WithGroup(string) slog.Handler      { return l }
func (l *lineLog) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

// limitFileSize sets this process's RLIMIT_FSIZE: past it a write to a
// regular file fails (EFBIG; Go ignores SIGXFSZ), as a full or failing
// disk fails JetStream's block writes, without a mount and as root too.
// The returned func restores the limit.
func limitFileSize(t *testing.T, n uint64) (restore func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lim := syscall.Rlimit{Cur: n, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}

// TestStoreRecoversFromDiskWriteFailure: the embedded store's disk
// refuses writes (here: a file size limit, as ENOSPC or a read-only
// remount do), so nats-server's file store keeps the write error for good
// on the streams it hit. New work is refused as ErrStoreFailing (503
// storage_unavailable) with one error line, the fault is on the metrics,
// and once the directory takes writes again the store recovers by itself
// (JetStream started again): new jobs are accepted and the job accepted
// before the fault runs. Before, the write ended in "timeout waiting for
// ack" (500 internal_error) and the stream refused every write until the
// process restarted.
func TestStoreRecoversFromDiskWriteFailure(t *testing.T) {
	logs := &lineLog{}
	log := slog.New(logs)
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Port: -1, Logger: log, RecoverEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	o := testOptions(e.ClientURL())
	o.Embedded, o.Logger, o.RequestTimeout = e, log, 2*time.Second
	s := openStore(t, o)
	ctx := context.Background()
	spec := func(n int) Spec {
		return Spec{Tenant: "acme", Path: "/v1/chat/completions", Model: "m",
			Body: []byte(`{"model":"m","n":` + string(rune('0'+n)) + `,"pad":"` + strings.Repeat("p", 4<<10) + `"}`)}
	}
	before, _, err := s.Submit(ctx, spec(1))
	if err != nil {
		t.Fatal(err)
	}

	restore := limitFileSize(t, 1)
	var refused []error
	for n := range 3 {
		_, _, err := s.Submit(ctx, spec(2+n))
		refused = append(refused, err)
	}
	for n, err := range refused {
		if !errors.Is(err, ErrStoreFailing) {
			t.Fatalf("submit %d on a disk refusing writes: %v; want ErrStoreFailing", n, err)
		}
	}
	if e.StoreFault() == nil || e.StoreWriteFailures() == 0 {
		t.Fatalf("fault %v, %d write failures; want a fault and failures counted", e.StoreFault(), e.StoreWriteFailures())
	}
	if n := logs.count("job store cannot write to its data directory"); n != 1 {
		t.Errorf("%d fault lines; want 1. Lines at warn and above: %q", n, logs.lines)
	}
	if e.TryRecover() {
		t.Fatal("recovered while the directory still refuses writes")
	}

	restore()
	if !e.TryRecover() {
		t.Fatalf("not recovered once the directory takes writes: %v", e.StoreFault())
	}
	if e.StoreFault() != nil || e.StoreRecoveries() != 1 {
		t.Fatalf("after recovery: fault %v, %d recoveries; want none, 1", e.StoreFault(), e.StoreRecoveries())
	}
	var after *Job
	eventually(t, "a job accepted after recovery", func() bool {
		j, _, err := s.Submit(ctx, spec(6))
		after = j
		return err == nil
	})
	f, err := s.PutFile(ctx, File{Filename: "in.jsonl", Purpose: "batch", Tenant: "acme"}, bytes.NewReader([]byte("{}\n")))
	if err != nil {
		t.Fatalf("upload after recovery: %v", err)
	}
	if err := s.DeleteFile(ctx, "acme", f.ID); err != nil {
		t.Fatalf("delete after recovery: %v", err)
	}
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 2, Executor: okExec(&calls)})
	for _, id := range []string{before.ID, after.ID} {
		eventually(t, "job "+id+" done", func() bool {
			j, err := s.Job(ctx, "acme", id)
			return err == nil && j.Status == StatusSucceeded
		})
	}
}
