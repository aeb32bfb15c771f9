package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fillStore writes filler values into the bodies bucket, under keys no
// job uses, until JetStream refuses one: the last one written took the
// store past its hard bound, where every write is refused (the server
// checks its usage before a write, not the write's size).
func fillStore(t *testing.T, s *Store) {
	t.Helper()
	fillUntilRefused(t, s, "fill")
}

// fillStoreBelowBound writes filler values ("pad.N", 1 KiB each) into
// the bodies bucket until JetStream refuses one, then purges the last
// room of them: the store is under its hard bound by room fillers, so the
// next writes are accepted until one takes it past.
func fillStoreBelowBound(t *testing.T, s *Store, room int) {
	t.Helper()
	ctx := t.Context()
	written := fillUntilRefused(t, s, "pad")
	bodies, err := s.js.Stream(ctx, "KV_"+bodiesBucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range written[len(written)-room:] {
		if err := bodies.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bodiesBucket+"."+k)); err != nil {
			t.Fatal(err)
		}
	}
}

// fillUntilRefused writes 1 KiB filler values under prefix.0, prefix.1, …
// into the bodies bucket until JetStream refuses one with its store full,
// and returns the keys it wrote.
func fillUntilRefused(t *testing.T, s *Store, prefix string) []string {
	t.Helper()
	pad := bytes.Repeat([]byte("f"), 1<<10)
	var written []string
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s.%d", prefix, i)
		_, err := s.bodies.Put(t.Context(), k, pad)
		if err != nil && isStoreFullErr(err) {
			return written
		}
		if err != nil {
			t.Fatalf("filler %d: %v", i, err)
		}
		if i > 1000 {
			t.Fatal("the store took 1 MiB of filler without refusing")
		}
		written = append(written, k)
	}
}

// TestRefusedSubmitLeavesNoBody: a submit whose body was stored but whose
// message JetStream refused (the body's write took the store past its
// hard bound) removes that body at once: the store's usage is back where
// it was before the submit, not a body larger until retention. And what
// removes it works at the hard bound, for a message too (a record write
// refused after the message was stored).
func TestRefusedSubmitLeavesNoBody(t *testing.T) {
	srv := startBoundedServer(t, 128<<10)
	s := openStore(t, testOptions(srv.ClientURL()))
	ctx := context.Background()
	used := func() int64 {
		t.Helper()
		u, err := s.StoreUsage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return u.Bytes
	}
	work, err := s.js.Stream(ctx, workStream)
	if err != nil {
		t.Fatal(err)
	}

	// Filler until refused, then the last one purged: the store is under
	// its bound by less than a filler, so the next write is accepted and
	// takes it past.
	fillStoreBelowBound(t, s, 1)
	before := used()
	body := []byte(`{"model":"m","pad":"` + strings.Repeat("p", 8<<10) + `"}`)
	if _, _, err := s.Submit(ctx, Spec{Tenant: "acme", Path: "/v1/chat/completions", Model: "m", Body: body}); !errors.Is(err, ErrStoreFull) ||
		!strings.Contains(err.Error(), "enqueueing") {
		t.Fatalf("Submit past the hard bound: %v; want ErrStoreFull from enqueueing (the body stored)", err)
	}
	if after := used(); after != before {
		t.Fatalf("store usage %d after the refused submit, %d before: its body (%d bytes) was left behind", after, before, len(body))
	}

	// A body and a message without a record (Submit's, had its record
	// been refused), then the store filled to its hard bound again.
	key := singleKey("job_refused")
	rev, err := s.bodies.Put(ctx, key, []byte(`{"model":"m"}`))
	if err != nil {
		t.Fatal(err)
	}
	ack, err := s.enqueue(ctx, "interactive", key)
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, s)
	full := used()
	s.dropRefused(key, rev, ack.Sequence)
	if _, err := s.bodies.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the body after dropRefused at the hard bound: %v; want not found", err)
	}
	if _, err := work.GetMsg(ctx, ack.Sequence); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the message after dropRefused at the hard bound: %v; want not found", err)
	}
	if after := used(); after >= full {
		t.Errorf("store usage %d after dropRefused, %d before; want less", after, full)
	}
}

// TestRefusedBatchLeavesNoBodies: a batch whose creation JetStream refuses
// part-way, after some of its bodies were stored, removes them: the batch
// fails and never runs, and they would stay until retention.
func TestRefusedBatchLeavesNoBodies(t *testing.T) {
	srv := startBoundedServer(t, 128<<10)
	s := openStore(t, testOptions(srv.ClientURL()))
	ctx := context.Background()
	// Just under the hard bound: filler until refused, the last two
	// purged (room for the batch's record and its index entry, then for
	// a body, whose write takes the store past its bound).
	fillStoreBelowBound(t, s, 2)
	bodies, err := s.js.Stream(ctx, "KV_"+bodiesBucket)
	if err != nil {
		t.Fatal(err)
	}
	info := func() *jetstream.StreamInfo {
		t.Helper()
		i, err := bodies.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	before := info().State.Msgs
	reqs := make([]BatchRequest, 20)
	for i := range reqs {
		reqs[i] = BatchRequest{CustomID: fmt.Sprint(i), Method: "POST", URL: "/v1/chat/completions", Model: "m",
			Body: []byte(`{"model":"m","pad":"` + strings.Repeat("p", 2<<10) + `"}`)}
	}
	_, err = s.CreateBatch(ctx, BatchSpec{Tenant: "acme", InputFileID: "file-x", Endpoint: "/v1/chat/completions",
		CompletionWindow: "24h", Requests: reqs})
	if !errors.Is(err, ErrStoreFull) || !strings.Contains(err.Error(), "$KV."+bodiesBucket) && !strings.Contains(err.Error(), "$KV."+jobsBucket) {
		t.Fatalf("CreateBatch past the hard bound: %v; want ErrStoreFull writing its bodies and records", err)
	}
	if after := info().State.Msgs; after != before {
		t.Fatalf("%d bodies stored after the refused batch, %d before: its bodies were left behind", after, before)
	}
}

// TestRefusedBatchLeavesNothing: a batch creation JetStream refuses at its
// hard bound, at whichever step (its record, its index entry, part-way
// through its jobs' bodies, records and messages, or the write that
// starts it), answers ErrStoreFull at once and leaves nothing: the
// store's usage and every stream's message count are back where they
// were, no batch is listed, none counts as active. The room before the
// creation grows from none in steps (tiny filler values purged one at a
// time) smaller than a work message, until the write that starts the
// batch is the one refused. Without the change a refusal at the index
// entry kept the validating record (and later ones its jobs), and one at
// the start was not ErrStoreFull (the client got 500).
func TestRefusedBatchLeavesNothing(t *testing.T) {
	srv := startBoundedServer(t, 128<<10)
	s := openStore(t, testOptions(srv.ClientURL()))
	ctx := context.Background()
	streams := []string{"KV_" + bodiesBucket, "KV_" + jobsBucket, "KV_" + batchBucket, workStream}
	type state struct {
		used int64
		msgs [4]uint64
	}
	now := func() state {
		t.Helper()
		u, err := s.StoreUsage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st := state{used: u.Bytes}
		for i, name := range streams {
			str, err := s.js.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			info, err := str.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			st.msgs[i] = info.State.Msgs
		}
		return st
	}
	bodies, err := s.js.Stream(ctx, "KV_"+bodiesBucket)
	if err != nil {
		t.Fatal(err)
	}
	purge := func(k string) {
		t.Helper()
		if err := bodies.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bodiesBucket+"."+k)); err != nil {
			t.Fatal(err)
		}
	}
	// putUntilRefused writes values of size n until one is refused,
	// returning the keys written.
	putUntilRefused := func(prefix string, n int) []string {
		t.Helper()
		var keys []string
		for i := 0; ; i++ {
			k := fmt.Sprintf("%s.%d", prefix, i)
			if _, err := s.bodies.Put(ctx, k, bytes.Repeat([]byte("f"), n)); err != nil {
				if !isStoreFullErr(err) {
					t.Fatal(err)
				}
				return keys
			}
			if keys = append(keys, k); len(keys) > 2000 {
				t.Fatal("2,000 filler values stored without a refusal")
			}
		}
	}
	// Past the hard bound with 1 KiB values; 6 KiB of them purged (more
	// than a 3-request batch needs), and the room taken again with
	// 1-byte values, each smaller on disk than a work message.
	pads := putUntilRefused("pad", 1<<10)
	for _, k := range pads[len(pads)-6:] {
		purge(k)
	}
	tiny := putUntilRefused("tiny", 1)

	reqs := make([]BatchRequest, 3)
	for i := range reqs {
		reqs[i] = BatchRequest{CustomID: fmt.Sprint(i), Method: "POST", URL: "/v1/chat/completions", Model: "m", Body: []byte(`{"model":"m"}`)}
	}
	seen := map[string]int{}
	for attempt := 1; len(tiny) > 0 && seen["starting batch"] == 0; attempt++ {
		before := now()
		_, err := s.CreateBatch(ctx, BatchSpec{Tenant: "acme", InputFileID: "file-x", Endpoint: "/v1/chat/completions",
			CompletionWindow: "24h", Requests: reqs})
		if err == nil {
			break
		}
		step := "part-way"
		for _, st := range []string{"writing batch", "indexing batch", "starting batch"} {
			if strings.Contains(err.Error(), st) {
				step = st
			}
		}
		seen[step]++
		if !errors.Is(err, ErrStoreFull) {
			t.Fatalf("CreateBatch refused at %s (attempt %d): %v; want ErrStoreFull", step, attempt, err)
		}
		if after := now(); after != before {
			t.Fatalf("after a batch refused at %s: %d bytes used, messages %v in %v; before: %d bytes, messages %v",
				step, after.used, after.msgs, streams, before.used, before.msgs)
		}
		if bs, _, err := s.ListBatches(ctx, "acme", "", 10); err != nil || len(bs) != 0 {
			t.Fatalf("batches listed after a batch refused at %s: %d (%v); want none", step, len(bs), err)
		}
		purge(tiny[len(tiny)-1])
		tiny = tiny[:len(tiny)-1]
	}
	t.Logf("refusals by step: %v", seen)
	for _, step := range []string{"indexing batch", "part-way", "starting batch"} {
		if seen[step] == 0 {
			t.Errorf("no creation refused at %s; refused: %v", step, seen)
		}
	}
	eventually(t, "no batch to count as active", func() bool { a, _ := s.active.counts(); return a == 0 })
}

// TestRefusedSubmitReleasesIdempotencyKey: a submit with an
// Idempotency-Key that the full store refuses after it claimed the key
// leaves no claim, so the client's retry with the key, once there is
// room, goes ahead at once as a new job (idemWait is an hour here: a
// retry that waited for the refused submit's record would hit the
// test's deadline instead).
func TestRefusedSubmitReleasesIdempotencyKey(t *testing.T) {
	srv := startBoundedServer(t, 128<<10)
	s := openStore(t, testOptions(srv.ClientURL()))
	s.idemWait = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bodies, err := s.js.Stream(ctx, "KV_"+bodiesBucket)
	if err != nil {
		t.Fatal(err)
	}
	// Just under the hard bound (as TestRefusedSubmitLeavesNoBody): the
	// claim and the body are stored, the body's write takes the store
	// past its bound, and the message is refused.
	fillStoreBelowBound(t, s, 1)
	sp := Spec{Tenant: "acme", Path: "/v1/chat/completions", Model: "m",
		Body: []byte(`{"model":"m","pad":"` + strings.Repeat("p", 8<<10) + `"}`), IdempotencyKey: "retry-me"}
	if _, _, err := s.Submit(ctx, sp); !errors.Is(err, ErrStoreFull) || !strings.Contains(err.Error(), "enqueueing") {
		t.Fatalf("Submit past the hard bound: %v; want ErrStoreFull from enqueueing (after the claim)", err)
	}
	if e, err := s.idem.Get(ctx, idemKey("acme", "retry-me")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the refused submit's claim: %v %v; want it gone (not found)", e, err)
	}

	// Room again: the retry is a new submit, at once.
	if err := bodies.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bodiesBucket+".pad.>")); err != nil {
		t.Fatal(err)
	}
	j, existing, err := s.Submit(ctx, sp)
	if err != nil || existing {
		t.Fatalf("retry after the refusal: %v, existing=%v; want a new job at once", err, existing)
	}
	again, existing, err := s.Submit(ctx, sp)
	if err != nil || !existing || again.ID != j.ID {
		t.Fatalf("the accepted key's resubmit: %+v existing=%v %v; want job %s", again, existing, err, j.ID)
	}
}
