package jobs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// fileWrites watches the object store's subjects as every process's
// writes reach the server: a commit is one metadata message (Put sends
// it last, once the content is in), a copy begun is a chunk subject.
type fileWrites struct {
	nc   *nats.Conn
	ch   chan *nats.Msg
	mu   sync.Mutex
	meta map[string]int      // commits, by metadata subject (one per file)
	nuid map[string]struct{} // chunk subjects: copies begun, committed or not
}

func watchFileWrites(t *testing.T, srv *Embedded) *fileWrites {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w := &fileWrites{nc: nc, ch: make(chan *nats.Msg, 1<<16), meta: map[string]int{}, nuid: map[string]struct{}{}}
	if _, err := nc.ChanSubscribe("$O."+filesBucket+".>", w.ch); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // subscribed before anything is written
		t.Fatal(err)
	}
	return w
}

// counts returns the commits and the copies begun so far. The server
// queues a message for this connection before it answers a later
// request of the writer's (the batch's final write), and the flush's
// answer comes after whatever it queued here before it: after a flush,
// every write made before the caller saw the batch finished is in ch.
func (w *fileWrites) counts(t *testing.T) (commits, copies int) {
	t.Helper()
	if err := w.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		select {
		case m := <-w.ch:
			switch {
			case strings.HasPrefix(m.Subject, "$O."+filesBucket+".M."):
				w.meta[m.Subject]++
			case strings.HasPrefix(m.Subject, "$O."+filesBucket+".C."):
				w.nuid[m.Subject] = struct{}{}
			}
		default:
			for subj, n := range w.meta {
				if n != 1 {
					t.Errorf("%s committed %d times", subj, n)
				}
				commits += n
			}
			return commits, len(w.nuid)
		}
	}
}

// finishedBatch creates a batch of n requests through a process with no
// tracker and runs every job to its end: 400s and transport errors for
// the error file, the rest for the output file. No tracker has touched
// it yet.
func finishedBatch(t *testing.T, srv *Embedded, n int) (*Store, *Batch) {
	t.Helper()
	o := testOptions(srv.ClientURL())
	o.NoTracker, o.MaxAttempts = true, 1
	worker := openStore(t, o)
	ctx := context.Background()
	b, err := worker.CreateBatch(ctx, batchSpec("acme", n))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	stop := startWorker(t, worker, WorkerOptions{Concurrency: 4, Executor: mixedExec(&calls)})
	eventually(t, "all job records terminal", func() bool {
		for i := range n {
			r, _, err := worker.getJob(ctx, batchJobKey(b.ID, i))
			if err != nil || !r.Job.Status.Terminal() {
				return false
			}
		}
		return true
	})
	stop()
	return worker, b
}

// pauseFirstCommit makes the first result file written by any of the
// stores it is given to wait, before its commit, until release is
// closed; paused is closed when it begins to. Later writes go on.
type pauseFirstCommit struct {
	taken   atomic.Bool
	paused  chan struct{}
	release chan struct{}
}

func newPauseFirstCommit() *pauseFirstCommit {
	return &pauseFirstCommit{paused: make(chan struct{}), release: make(chan struct{})}
}

func (p *pauseFirstCommit) hook(ctx context.Context) {
	if !p.taken.CompareAndSwap(false, true) {
		return
	}
	close(p.paused)
	select {
	case <-p.release:
	case <-ctx.Done():
	}
}

// openTrackers opens two tracking processes on srv with clock c, both
// under p's pause; it returns the one that claimed the batch's files
// (paused before its first commit) and the other.
func openTrackers(t *testing.T, srv *Embedded, batchID string, c *clock, p *pauseFirstCommit) (holder, other *Store) {
	t.Helper()
	var stores [2]*Store
	for i := range stores {
		o := testOptions(srv.ClientURL())
		o.Now, o.FileWriteLease = c.Now, 30*time.Second
		o.beforeFileCommit = p.hook
		o.Registerer = prometheus.NewRegistry()
		stores[i] = openStore(t, o)
	}
	select {
	case <-p.paused:
	case <-time.After(20 * time.Second):
		t.Fatal("no tracker began writing the result files")
	}
	rec, _, err := stores[0].getBatch(context.Background(), batchKey("acme", batchID))
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case rec.Writer == nil:
		t.Fatalf("a result file is being written with no claim: %+v", rec)
	case rec.Writer.Owner == stores[0].owner:
		return stores[0], stores[1]
	case rec.Writer.Owner != stores[1].owner:
		t.Fatalf("claimed by %s, neither %s nor %s", rec.Writer.Owner, stores[0].owner, stores[1].owner)
	}
	return stores[1], stores[0]
}

// checkResultFiles reads the batch's files whole and checks every
// request is in one of them once, in input order, and that they are what
// any other process would have written (content, and created_at from the
// record).
func checkResultFiles(t *testing.T, s *Store, b *Batch, n int) {
	t.Helper()
	if b.RequestCounts != (BatchCounts{Total: n, Completed: n - n/5, Failed: n / 5}) || b.OutputFileID == nil || b.ErrorFileID == nil {
		t.Fatalf("batch = %+v", b)
	}
	seen := map[string]int{}
	for _, id := range []*string{b.OutputFileID, b.ErrorFileID} {
		prev := -1
		for _, l := range readLines(t, s, "acme", id) {
			var i int
			fmt.Sscanf(l.CustomID, "req-%d", &i)
			if i <= prev {
				t.Fatalf("lines out of order: %s after req-%d", l.CustomID, prev)
			}
			prev = i
			seen[l.CustomID]++
		}
	}
	for i := range n {
		if c := seen[fmt.Sprintf("req-%d", i)]; c != 1 {
			t.Errorf("req-%d in the result files %d times", i, c)
		}
	}
	// Another process, with another clock, writes the same bytes.
	ctx := context.Background()
	rec, _, err := s.getBatch(ctx, batchKey("acme", b.ID))
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions("")
	o.Now = func() time.Time { return time.Unix(1, 0) }
	o.defaults()
	other := &Store{o: o, jobs: s.jobs}
	a := &actor{s: other, id: b.ID, jobs: map[int]*jobState{}}
	for i := range n {
		r, _, err := s.getJob(ctx, batchJobKey(b.ID, i))
		if err != nil {
			t.Fatal(err)
		}
		a.jobs[i] = &jobState{status: r.Job.Status, kind: kindOf(r)}
	}
	outIdx, errIdx := a.lineIndexes()
	for _, f := range []struct {
		id  *string
		idx []int
	}{{b.OutputFileID, outIdx}, {b.ErrorFileID, errIdx}} {
		var want bytes.Buffer
		if err := a.writeLines(ctx, &want, f.idx, a.keepClaim()); err != nil {
			t.Fatal(err)
		}
		rc, err := s.FileContent(ctx, "acme", *f.id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s: stored content differs from another process's", *f.id)
		}
		meta, err := s.File(ctx, "acme", *f.id)
		if err != nil {
			t.Fatal(err)
		}
		if rec.FilesAt == 0 || meta.CreatedAt != rec.FilesAt {
			t.Errorf("%s created_at %d, want the record's files_at %d", *f.id, meta.CreatedAt, rec.FilesAt)
		}
	}
}

// Two trackers finalizing one batch: the one that claims the files
// writes them, and is held just before its first commit until the other
// has found the claim and stood back; then it commits. Each file is
// committed once and only one copy of each is begun. (Without the claim
// the other tracker, finding no output file, writes both itself.)
func TestBatchFilesWrittenOnceByRacingTrackers(t *testing.T) {
	srv := startServer(t, t.TempDir())
	_, b := finishedBatch(t, srv, 20)
	writes := watchFileWrites(t, srv)
	p := newPauseFirstCommit()
	holder, other := openTrackers(t, srv, b.ID, newClock(), p)
	eventually(t, "the other tracker to leave the files to the holder", func() bool {
		return other.stats.fileClaimWaits.Load() >= 2
	})
	if got, _ := other.Batch(context.Background(), "acme", b.ID); got.Status != batchFinalizing {
		t.Fatalf("batch %s while its files are being written", got.Status)
	}
	close(p.release)
	done := waitBatch(t, other, "acme", b.ID, batchCompleted)
	if commits, copies := writes.counts(t); commits != 2 || copies != 2 {
		t.Fatalf("%d commits, %d copies begun; want 2 and 2 (one output, one error file)", commits, copies)
	}
	if holder.stats.fileClaimWaits.Load() != 0 || other.stats.fileClaimTakeovers.Load() != 0 {
		t.Fatalf("holder waited %d times, other took over %d times", holder.stats.fileClaimWaits.Load(),
			other.stats.fileClaimTakeovers.Load())
	}
	checkResultFiles(t, other, done, 20)
}

// A holder that stops mid-write (here: held before its first commit; to
// every other process the same as dead) keeps the files for its lease;
// once the lease is over the other tracker takes the claim, writes the
// files and finishes the batch. When the stalled holder wakes, its
// commit finds the claim gone and is abandoned: its copy is dropped and
// each file is committed once.
func TestBatchFileClaimTakenOverAfterLease(t *testing.T) {
	srv := startServer(t, t.TempDir())
	_, b := finishedBatch(t, srv, 20)
	writes := watchFileWrites(t, srv)
	p := newPauseFirstCommit()
	c := newClock()
	holder, other := openTrackers(t, srv, b.ID, c, p)
	ctx := context.Background()
	eventually(t, "the other tracker to leave the files to the holder", func() bool {
		return other.stats.fileClaimWaits.Load() >= 2
	})
	// Within the lease the claim holds, however often the other looks.
	c.Advance(29 * time.Second)
	waits := other.stats.fileClaimWaits.Load()
	eventually(t, "the other tracker to look again", func() bool { return other.stats.fileClaimWaits.Load() >= waits+2 })
	if got, _ := other.Batch(ctx, "acme", b.ID); got.Status != batchFinalizing || other.stats.fileClaimTakeovers.Load() != 0 {
		t.Fatalf("batch %s, %d takeovers, within the holder's lease", got.Status, other.stats.fileClaimTakeovers.Load())
	}
	c.Advance(2 * time.Second)
	done := waitBatch(t, other, "acme", b.ID, batchCompleted)
	if n := promtest.Value(t, other.o.Registerer.(prometheus.Gatherer), "sluice_jobs_batch_file_claim_takeovers_total", ""); n != 1 {
		t.Fatalf("sluice_jobs_batch_file_claim_takeovers_total %v, want 1", n)
	}
	if n := promtest.Value(t, other.o.Registerer.(prometheus.Gatherer), "sluice_jobs_batch_file_claim_waits_total", ""); n < 4 {
		t.Fatalf("sluice_jobs_batch_file_claim_waits_total %v, want at least the 4 waited for", n)
	}
	// The holder wakes and tries to commit: it finds the claim gone and
	// abandons its copy, whose chunks Put drops; the stream is left with
	// the two files' chunks only.
	close(p.release)
	st, err := other.js.Stream(ctx, filesStream)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the abandoned copy's chunks to be dropped", func() bool {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter("$O."+filesBucket+".C.>"))
		return err == nil && len(info.State.Subjects) == 2
	})
	if err := holder.Close(); err != nil { // waits for its tracker
		t.Fatal(err)
	}
	if commits, copies := writes.counts(t); commits != 2 || copies != 3 {
		t.Fatalf("%d commits, %d copies begun; want 2 commits, 3 copies (the holder's abandoned one)", commits, copies)
	}
	checkResultFiles(t, other, done, 20)
}

// A holder whose gateway closes mid-write gives its claim back: the
// other tracker writes the files at once, with no lease to wait out (the
// clock never moves here), and nothing is committed twice.
func TestBatchFileClaimReleasedOnClose(t *testing.T) {
	srv := startServer(t, t.TempDir())
	_, b := finishedBatch(t, srv, 20)
	writes := watchFileWrites(t, srv)
	p := newPauseFirstCommit()
	holder, other := openTrackers(t, srv, b.ID, newClock(), p)
	eventually(t, "the other tracker to leave the files to the holder", func() bool {
		return other.stats.fileClaimWaits.Load() >= 2
	})
	if err := holder.Close(); err != nil { // ends the held write: its Put fails
		t.Fatal(err)
	}
	done := waitBatch(t, other, "acme", b.ID, batchCompleted)
	if commits, _ := writes.counts(t); commits != 2 {
		t.Fatalf("%d commits, want 2", commits)
	}
	if n := other.stats.fileClaimTakeovers.Load(); n != 0 {
		t.Fatalf("%d takeovers of a claim given back, want 0", n)
	}
	checkResultFiles(t, other, done, 20)
}
