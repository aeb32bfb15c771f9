package jobs

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// lockedBuffer is a log destination the server's goroutines write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// auditRun is one run of the gateway's store over dir: the embedded
// server and a Store on it, both told of each other as the app does.
type auditRun struct {
	emb *Embedded
	s   *Store
	log *lockedBuffer
}

func startAuditRun(t *testing.T, dir string) *auditRun {
	t.Helper()
	r := &auditRun{log: &lockedBuffer{}}
	logger := slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	emb, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions(emb.ClientURL())
	o.Embedded, o.Logger, o.NoTracker = emb, logger, true
	s, err := Open(t.Context(), o)
	if err != nil {
		emb.Shutdown()
		t.Fatal(err)
	}
	r.emb, r.s = emb, s
	return r
}

func (r *auditRun) stop(t *testing.T) {
	t.Helper()
	if err := r.s.Close(); err != nil {
		t.Error(err)
	}
	r.emb.Shutdown()
}

// seedStore runs the store once over a new directory: n jobs accepted,
// then a clean stop. It returns the directory and the jobs' ids.
func seedStore(t *testing.T, n int) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	r := startAuditRun(t, dir)
	var ids []string
	for range n {
		j, _, err := r.s.Submit(context.Background(), spec("acme"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	r.stop(t)
	return dir, ids
}

func streamFile(dir, stream string, parts ...string) string {
	return filepath.Join(append([]string{streamsDir(dir), stream}, parts...)...)
}

// lostJobs counts the ids the store no longer knows.
func lostJobs(t *testing.T, s *Store, ids []string) int {
	t.Helper()
	n := 0
	for _, id := range ids {
		if _, err := s.Job(context.Background(), "acme", id); isNotFound(err) {
			n++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func damageOf(ds []StreamDamage, stream string) *StreamDamage {
	for i := range ds {
		if ds[i].Stream == stream {
			return &ds[i]
		}
	}
	return nil
}

// TestStoreAuditReportsCutJobRecords: half of the job records' block cut
// between two runs. nats-server rebuilds the stream from what is left and
// says so only as a warning, counting the missing messages as deleted;
// the jobs accepted in the cut part answer 404. The start must report the
// stream, the count lost, in one error line, /status's text and the
// metric's source.
func TestStoreAuditReportsCutJobRecords(t *testing.T) {
	dir, ids := seedStore(t, 3)
	blk := streamFile(dir, jobsKVStream, "msgs", "1.blk")
	fi, err := os.Stat(blk)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(blk, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	r := startAuditRun(t, dir)
	defer r.stop(t)
	lost := lostJobs(t, r.s, ids)
	if lost == 0 {
		t.Fatal("no job lost: the corruption did not take")
	}
	d := damageOf(r.emb.StoreDamage(), jobsKVStream)
	if d == nil {
		t.Fatalf("%d of %d jobs answer not found after a cut block, and the start reported no damage (log: %s)", lost, len(ids), r.log.String())
	}
	if d.LostMsgs != uint64(lost) {
		t.Errorf("damage %+v: %d messages lost, want %d (one record per job)", d, d.LostMsgs, lost)
	}
	if n := strings.Count(r.log.String(), "job store found damaged on disk"); n != 1 {
		t.Errorf("%d error lines about the damage, want 1: %s", n, r.log.String())
	}
	if txt := r.emb.StoreDamageText(); !strings.Contains(txt, dir) || !strings.Contains(txt, jobsKVStream) {
		t.Errorf("status text %q names neither the data directory nor the stream", txt)
	}
}

// TestStoreAuditReportsEmptiedQueue: the work stream's block emptied: the
// records are there (the jobs answer "queued") but no worker will ever
// run them. The start must say the queue lost them.
func TestStoreAuditReportsEmptiedQueue(t *testing.T) {
	dir, ids := seedStore(t, 4)
	if err := os.Truncate(streamFile(dir, workStream, "msgs", "1.blk"), 0); err != nil {
		t.Fatal(err)
	}
	r := startAuditRun(t, dir)
	defer r.stop(t)
	if lost := lostJobs(t, r.s, ids); lost != 0 {
		t.Fatalf("%d job records lost; this test cuts only the queue", lost)
	}
	d := damageOf(r.emb.StoreDamage(), workStream)
	if d == nil || d.LostMsgs != uint64(len(ids)) {
		t.Fatalf("queue emptied on disk (%d queued jobs will never run): damage %+v, want %d lost in %s", len(ids), d, len(ids), workStream)
	}
}

// TestStoreAuditReportsCutFile: an uploaded file's chunks cut: the file
// answers not found.
func TestStoreAuditReportsCutFile(t *testing.T) {
	dir := t.TempDir()
	r := startAuditRun(t, dir)
	f, err := r.s.PutFile(context.Background(), File{Filename: "in.jsonl", Purpose: "batch", Tenant: "acme"},
		bytes.NewReader(bytes.Repeat([]byte("x"), 4096)))
	if err != nil {
		t.Fatal(err)
	}
	r.stop(t)
	if err := os.Truncate(streamFile(dir, "OBJ_"+filesBucket, "msgs", "1.blk"), 0); err != nil {
		t.Fatal(err)
	}
	r = startAuditRun(t, dir)
	defer r.stop(t)
	if _, err := r.s.File(context.Background(), "acme", f.ID); !isNotFound(err) {
		t.Fatalf("file after its block was emptied: %v; want not found", err)
	}
	if d := damageOf(r.emb.StoreDamage(), "OBJ_"+filesBucket); d == nil || d.LostMsgs == 0 {
		t.Fatalf("file lost, damage %+v", r.emb.StoreDamage())
	}
}

// TestStoreAuditKeepsUnreadableMetaAside: garbage in a stream's meta.inf.
// nats-server skips the stream (checksum mismatch); the gateway's create
// rewrites the metadata over the same blocks, so no record is lost
// (measured), but the skip is reported and the refused files are kept.
func TestStoreAuditKeepsUnreadableMetaAside(t *testing.T) {
	dir, ids := seedStore(t, 3)
	meta := streamFile(dir, jobsKVStream, "meta.inf")
	if err := os.WriteFile(meta, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startAuditRun(t, dir)
	defer r.stop(t)
	if lost := lostJobs(t, r.s, ids); lost != 0 {
		t.Fatalf("%d jobs lost after a meta file was damaged; the blocks are intact", lost)
	}
	d := damageOf(r.emb.StoreDamage(), jobsKVStream)
	if d == nil || d.KeptAt == "" || d.LostMsgs != 0 {
		t.Fatalf("skipped stream not reported, or not kept aside: %+v (log: %s)", d, r.log.String())
	}
	if b, err := os.ReadFile(filepath.Join(d.KeptAt, "meta.inf")); err != nil || string(b) != "garbage" {
		t.Fatalf("damaged meta.inf kept at %s: %q, %v", d.KeptAt, b, err)
	}
}

// TestStoreAuditCleanRestartsReportNothing: restarts with jobs run and
// removed in between (acks, deletes) report nothing; a damage is reported
// by the start that found it only.
func TestStoreAuditCleanRestartsReportNothing(t *testing.T) {
	dir, ids := seedStore(t, 3)
	r := startAuditRun(t, dir)
	if d := r.emb.StoreDamage(); d != nil {
		t.Fatalf("clean restart reported %+v", d)
	}
	var calls atomic.Int64
	stopWorker := startWorker(t, r.s, WorkerOptions{Executor: okExec(&calls)})
	for _, id := range ids {
		eventually(t, "job run", func() bool { return mustJob(t, r.s, "acme", id).Status == StatusSucceeded })
	}
	stopWorker()
	r.stop(t)
	if err := os.Truncate(streamFile(dir, jobsKVStream, "msgs", "1.blk"), 0); err != nil {
		t.Fatal(err)
	}
	r = startAuditRun(t, dir)
	if r.emb.StoreDamage() == nil {
		t.Error("emptied block after a run not reported")
	}
	r.stop(t)
	r = startAuditRun(t, dir)
	defer r.stop(t)
	if d := r.emb.StoreDamage(); d != nil {
		t.Fatalf("the next clean start reported the old damage again: %+v", d)
	}
}

// TestCompareMarkExpiry: fewer messages than marked is no loss while some
// may have expired during the stop.
func TestCompareMarkExpiry(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	mark := streamMark{LastSeq: 10, Msgs: 10, Oldest: now.Add(-2 * time.Hour)}
	st := server.StreamState{LastSeq: 10, Msgs: 4}
	if _, gone := compareMark(mark, true, st, time.Hour, now); gone != 0 {
		t.Errorf("messages older than MaxAge counted lost: %d", gone)
	}
	if _, gone := compareMark(mark, true, st, 3*time.Hour, now); gone != 6 {
		t.Errorf("lost %d, want 6", gone)
	}
	if _, gone := compareMark(mark, false, st, 3*time.Hour, now); gone != 0 {
		t.Errorf("a start's marks compared by count: %d", gone)
	}
	if _, gone := compareMark(mark, false, server.StreamState{LastSeq: 7}, 0, now); gone != 3 {
		t.Errorf("last sequence back by 3: %d lost", gone)
	}
}

// TestCompareMarkRetentionRaised: a restart with a longer queue.retention
// loads the stream with the marked MaxAge, and nats-server expires by it
// before the gateway's create raises it. Messages past the old MaxAge are
// expired, not lost: the old code compared with the new MaxAge only and
// reported 6 of 10 lost.
func TestCompareMarkRetentionRaised(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	mark := streamMark{LastSeq: 10, Msgs: 10, Oldest: now.Add(-25 * time.Hour), MaxAge: 24 * time.Hour}
	st := server.StreamState{LastSeq: 10, Msgs: 4}
	if p, gone := compareMark(mark, true, st, 7*24*time.Hour, now); gone != 0 {
		t.Errorf("messages past the marked MaxAge counted lost: %d (%s)", gone, p)
	}
	if p, gone := compareMark(mark, true, st, 0, now); gone != 0 {
		t.Errorf("retention made unlimited: messages past the marked MaxAge counted lost: %d (%s)", gone, p)
	}
	mark.Oldest = now.Add(-time.Hour) // none can have expired by either
	if _, gone := compareMark(mark, true, st, 7*24*time.Hour, now); gone != 6 {
		t.Errorf("lost %d, want 6", gone)
	}
}

func FuzzParseStoreMarks(f *testing.F) {
	f.Add([]byte(`{"written":"2026-12-06T13:37:52Z","clean":true,"streams":{"KV_sluice_jobs":{"last_seq":4,"msgs":3,"oldest":"2026-12-06T13:37:50Z"}}}`))
	f.Add([]byte(`{"streams":{"../x":{}}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseStoreMarks(b)
		if err != nil {
			return
		}
		for name := range m.Streams {
			if name == "" || strings.ContainsAny(name, "/\\") {
				t.Fatalf("stream name %q accepted", name)
			}
		}
	})
}

// jobsKVStream is the jobs bucket's stream on disk.
const jobsKVStream = "KV_" + jobsBucket

// TestStoreAuditAckAfterTheMarkIsNoLoss: a worker connected to the
// embedded server (a `sluice worker` on queue.listen) acks a job it held
// and takes and acks another between the clean stop's marks and the
// server's stop. The work queue removes both; nothing is lost. The old
// audit compared the count with the marks and reported 2 lost messages
// in SLUICE_JOBS at the next start.
func TestStoreAuditAckAfterTheMarkIsNoLoss(t *testing.T) {
	dir, ids := seedStore(t, 3)
	r := startAuditRun(t, dir)
	if _, err := r.s.consumer(t.Context(), "interactive"); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(r.emb.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(t.Context(), workStream, "jobs-interactive")
	if err != nil {
		t.Fatal(err)
	}
	take := func() jetstream.Msg {
		t.Helper()
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			return m
		}
		t.Fatal("no queued job delivered")
		return nil
	}
	held := take()
	queued := func() uint64 {
		loaded, err := r.emb.loadedStreams()
		if err != nil {
			t.Fatal(err)
		}
		return loaded[workStream].state.Msgs
	}
	r.emb.afterMark = func() {
		if err := held.DoubleAck(t.Context()); err != nil {
			t.Error(err)
		}
		if err := take().DoubleAck(t.Context()); err != nil {
			t.Error(err)
		}
		eventually(t, "the acked jobs removed from the queue", func() bool { return queued() == 1 })
	}
	r.stop(t)
	nc.Close()
	r = startAuditRun(t, dir)
	defer r.stop(t)
	if d := r.emb.StoreDamage(); d != nil {
		t.Fatalf("acks after the clean stop's marks reported as damage: %+v", d)
	}
	if strings.Contains(r.log.String(), "damaged") {
		t.Errorf("error line for acks: %s", r.log.String())
	}
	if n := lostJobs(t, r.s, ids); n != 0 {
		t.Errorf("%d job records lost", n)
	}
}

// TestStoreAuditConsumerStateDamaged: the queue's durable consumer's
// state file cut between runs (2 jobs run, 2 queued). nats-server skips
// the consumer and refuses to create it again over its directory, so on
// the old code the worker stopped at start ("creating consumer for class
// interactive: ... error creating store for consumer") and the queued
// jobs never ran, with nothing in the start's damage. Now the consumer's
// directory is kept aside, the start reports it, the workers make the
// consumer again: the queued jobs run once, the finished ones not again.
func TestStoreAuditConsumerStateDamaged(t *testing.T) {
	dir := t.TempDir()
	r := startAuditRun(t, dir)
	var calls atomic.Int64
	stopWorker := startWorker(t, r.s, WorkerOptions{Executor: okExec(&calls)})
	var done, queued []string
	for range 2 {
		j, _, err := r.s.Submit(context.Background(), spec("acme"))
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, j.ID)
	}
	for _, id := range done {
		eventually(t, "job run", func() bool { return mustJob(t, r.s, "acme", id).Status == StatusSucceeded })
	}
	stopWorker()
	for range 2 {
		j, _, err := r.s.Submit(context.Background(), spec("acme"))
		if err != nil {
			t.Fatal(err)
		}
		queued = append(queued, j.ID)
	}
	r.stop(t)
	odat := streamFile(dir, workStream, "obs", "jobs-interactive", "o.dat")
	fi, err := os.Stat(odat)
	if err != nil || fi.Size() < 2 {
		t.Fatalf("consumer state file: %v, %v", fi, err)
	}
	if err := os.Truncate(odat, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	r = startAuditRun(t, dir)
	defer r.stop(t)
	d := damageOf(r.emb.StoreDamage(), workStream)
	if d == nil || !strings.Contains(d.Problem, "consumer jobs-interactive") || d.LostMsgs != 0 {
		t.Fatalf("damaged consumer not reported: %+v", r.emb.StoreDamage())
	}
	if !strings.Contains(r.log.String(), "job store found damaged on disk at start") {
		t.Errorf("no error line: %s", r.log.String())
	}
	kept, _ := filepath.Glob(filepath.Join(dir, "damaged-*", workStream, "obs", "jobs-interactive", "o.dat"))
	if len(kept) != 1 {
		t.Errorf("damaged consumer not kept aside: %v", kept)
	}
	calls.Store(0)
	startWorker(t, r.s, WorkerOptions{Executor: okExec(&calls)})
	for _, id := range queued {
		eventually(t, "a job queued before the damage run", func() bool { return mustJob(t, r.s, "acme", id).Status == StatusSucceeded })
	}
	if n := calls.Load(); n != int64(len(queued)) {
		t.Errorf("%d executions after the restart, want %d (the queued jobs once, the finished ones not again)", n, len(queued))
	}
}
