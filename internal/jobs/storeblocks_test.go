package jobs

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// leaseKey is a key rewritten often, as the webhook heartbeat and the
// sweep lease are.
const leaseKey = "test-lease"

// damageInPlace writes 5,000 seeded random bytes over the last 6 KB of
// the file at path, its length unchanged: what the review did to
// KV_sluice_jobs' block.
func damageInPlace(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 5000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range junk {
		junk[i] = byte(r.Uint32())
	}
	if _, err := f.WriteAt(junk, max(0, fi.Size()-6<<10)); err != nil {
		t.Fatal(err)
	}
}

// A KV block damaged in place between two runs made nats-server v2.15.2
// loop under the stream's lock at the first write to a key whose record
// was in the damaged part: every later call on the queue waited. The
// start now cuts the block at its first unreadable record: the writes
// complete, the loss is reported, the original block is kept.
func TestStoreCutsAKVBlockDamagedInPlace(t *testing.T) {
	// 40 jobs, and a key written after each as the webhook heartbeat and
	// sweep lease are (the key the review's gateway wedged on): its last
	// value lies in the damaged part, its earlier ones removed before.
	dir := t.TempDir()
	seed := startAuditRun(t, dir)
	var ids []string
	for i := range 40 {
		j, _, err := seed.s.Submit(context.Background(), spec("acme"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
		if _, err := seed.s.jobs.Put(context.Background(), leaseKey, []byte(strings.Repeat("x", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	seed.stop(t)
	blk := streamFile(dir, jobsKVStream, "msgs", "1.blk")
	before, err := os.Stat(blk)
	if err != nil {
		t.Fatal(err)
	}
	damageInPlace(t, blk)

	r := startAuditRun(t, dir)
	defer r.stop(t)
	// A write to each job's record: a cancel. Before, the first whose
	// record was in the damaged part never returned (nats-server spinning
	// in firstSeqForSubj); the bound ends the test's wait, not the loop.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	if _, err := r.s.jobs.Put(ctx, leaseKey, []byte("after")); err != nil {
		t.Fatalf("writing %s after the damage: %v (nats-server wedged on the damaged block?)", leaseKey, err)
	}
	cancel()
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := r.s.CancelJob(ctx, "acme", id)
		cancel()
		if err != nil && !isNotFound(err) {
			t.Fatalf("cancelling %s after the damage: %v (nats-server wedged on the damaged block?)", id, err)
		}
	}
	lost := lostJobs(t, r.s, ids)
	if lost == 0 {
		t.Fatal("no job lost: the damage did not take")
	}
	d := damageOf(r.emb.StoreDamage(), jobsKVStream)
	if d == nil || !strings.Contains(d.Problem, "cut there") {
		t.Fatalf("damage %+v: want the block cut reported (log: %s)", d, r.log.String())
	}
	if d.LostMsgs < uint64(lost) { // and the lease's revisions in the cut part
		t.Errorf("damage %+v: %d messages lost, want at least the %d jobs' records", d, d.LostMsgs, lost)
	}
	kept, _ := filepath.Glob(filepath.Join(dir, "damaged-*", jobsKVStream, "msgs", "1.blk"))
	if len(kept) != 1 {
		t.Fatalf("original block kept at %v, want one copy", kept)
	}
	if fi, err := os.Stat(kept[0]); err != nil || fi.Size() != before.Size() {
		t.Errorf("kept block: %v, size want %d", err, before.Size())
	}
}

// A clean block has no bad record; one cut inside a record has it there.
func TestFirstBadRecord(t *testing.T) {
	dir, _ := seedStore(t, 3)
	blk := streamFile(dir, jobsKVStream, "msgs", "1.blk")
	bad, size, err := firstBadRecord(blk)
	if err != nil || bad != -1 || size == 0 {
		t.Fatalf("clean block: bad %d size %d err %v, want -1", bad, size, err)
	}
	if err := os.Truncate(blk, size-3); err != nil {
		t.Fatal(err)
	}
	bad, _, err = firstBadRecord(blk)
	if err != nil || bad <= 0 || bad >= size-3 {
		t.Fatalf("block cut 3 bytes short: bad %d err %v, want the last record's offset", bad, err)
	}
	if _, _, err := firstBadRecord(filepath.Join(dir, "nope.blk")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing block: %v", err)
	}
}
