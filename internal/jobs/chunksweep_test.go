package jobs

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// offsetClock is the wall clock moved by a settable offset: the server
// stamps chunks with its own clock, so the sweep's age is judged against
// real time moved forward, not a clock of the test's own.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time        { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) Set(off time.Duration) { c.off.Store(int64(off)) }
func chunkCount(t *testing.T, s *Store, nuid string) uint64 {
	t.Helper()
	st, err := s.js.Stream(context.Background(), filesStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(fileChunksSubject(nuid)))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[fileChunksSubject(nuid)]
}

// A write killed before its commit leaves chunks no file names: the
// sweep purges them once their newest is OrphanChunkAge old, and only
// them. A committed file, and a write in progress (its chunks sent, its
// commit not yet), are kept and read whole after.
func TestSweepPurgesOnlyChunksOfWritesThatNeverCommitted(t *testing.T) {
	clock := &offsetClock{}
	s, _ := newStore(t, func(o *Options) { o.Now = clock.Now; o.NoTracker = true })
	ctx := context.Background()

	committed := randomContent(t, 300<<10)
	putTestFile(t, s, "file-committed", committed)

	// A write in progress: one chunk and more sent, then held.
	inProgress := randomContent(t, 200<<10)
	pr, pw := io.Pipe()
	putDone := make(chan error, 1)
	go func() {
		f := &File{ID: "file-writing", Tenant: "acme", Purpose: "batch_output", Filename: "w.jsonl"}
		_, err := s.files.Put(ctx, fileMeta(f, "batch_x"), pr)
		putDone <- err
	}()
	if _, err := pw.Write(inProgress[:150<<10]); err != nil {
		t.Fatal(err)
	}

	// A write killed mid-way: two chunks on a copy nobody commits.
	orphan := nuid.Next()
	for range 2 {
		if _, err := s.js.Publish(ctx, fileChunksSubject(orphan), randomContent(t, 128<<10)); err != nil {
			t.Fatal(err)
		}
	}

	// Younger than the age: nothing is purged.
	clock.Set(DefaultOrphanChunkAge - time.Minute)
	if n, err := s.sweepOrphanChunks(ctx); err != nil || n != 0 {
		t.Fatalf("sweep at %s: %d purged, %v; want none", DefaultOrphanChunkAge-time.Minute, n, err)
	}
	if got := chunkCount(t, s, orphan); got != 2 {
		t.Fatalf("orphan has %d chunks after the early sweep, want 2", got)
	}
	// The write in progress commits after that sweep.
	if _, err := pw.Write(inProgress[150<<10:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-putDone; err != nil {
		t.Fatal(err)
	}

	clock.Set(DefaultOrphanChunkAge + time.Minute)
	if n, err := s.sweepOrphanChunks(ctx); err != nil || n != 1 {
		t.Fatalf("sweep at %s: %d purged, %v; want the orphan's copy", DefaultOrphanChunkAge+time.Minute, n, err)
	}
	if got := chunkCount(t, s, orphan); got != 0 {
		t.Fatalf("orphan has %d chunks after the sweep, want 0", got)
	}
	if got := s.stats.orphanChunksPurged.Load(); got != 1 {
		t.Fatalf("orphanChunksPurged %d, want 1", got)
	}
	for id, want := range map[string][]byte{"file-committed": committed, "file-writing": inProgress} {
		rc, err := s.FileContent(ctx, "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s after the sweep: %d of %d bytes, %v", id, len(got), len(want), err)
		}
	}
	// A sweep with nothing left to purge purges nothing.
	if n, err := s.sweepOrphanChunks(ctx); err != nil || n != 0 {
		t.Fatalf("second sweep: %d purged, %v", n, err)
	}
}

// The tracker sweeps as it starts: a gateway restarted after a crash
// frees what the crash left.
func TestTrackerSweepsAtStart(t *testing.T) {
	clock := &offsetClock{}
	s, srv := newStore(t, func(o *Options) { o.Now = clock.Now; o.NoTracker = true })
	orphan := nuid.Next()
	if _, err := s.js.Publish(context.Background(), fileChunksSubject(orphan), []byte("chunk")); err != nil {
		t.Fatal(err)
	}
	clock.Set(2 * DefaultOrphanChunkAge)
	o := testOptions(srv.ClientURL())
	o.Now = clock.Now
	tracked := openStore(t, o)
	eventually(t, "the orphan purged", func() bool { return chunkCount(t, s, orphan) == 0 })
	// The sweep counts its purges once it has made them all: the count
	// may come a moment after the chunks are gone (read at once, it
	// failed 1 run in 3 under -race).
	eventually(t, "the purge counted", func() bool { return tracked.stats.orphanChunksPurged.Load() >= 1 })
	if got := tracked.stats.orphanChunksPurged.Load(); got != 1 {
		t.Fatalf("orphanChunksPurged %d, want 1", got)
	}
}
