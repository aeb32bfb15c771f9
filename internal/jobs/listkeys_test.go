package jobs

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// A listing lists the live keys matching its filter, each once, and no
// deleted or purged one, past several requests' worth.
func TestListingListsLiveKeys(t *testing.T) {
	s, _ := newStore(t, func(o *Options) { o.NoTracker = true })
	ctx := context.Background()
	const n = 2*listBatch + 100
	var ws []asyncWrite
	for i := range n {
		ws = append(ws, asyncWrite{bucket: jobsBucket, key: webhookIndexKey(fmt.Sprintf("j%05d", i)), value: []byte("x"), noCAS: true})
	}
	ws = append(ws, asyncWrite{bucket: jobsBucket, key: "other.key", value: []byte("x"), noCAS: true})
	if _, err := s.writeAll(ctx, ws); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range n {
		k := webhookIndexKey(fmt.Sprintf("j%05d", i))
		switch i % 3 {
		case 0:
			if err := s.jobs.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		case 1:
			if err := s.jobs.Purge(ctx, k); err != nil {
				t.Fatal(err)
			}
		default:
			want = append(want, k)
		}
	}
	got, err := s.listKeys(ctx, jobsBucket, webhookIndexFilter)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("listed %d keys, want the %d live ones", len(got), len(want))
	}
}

// A listing ends when the keys it would have read are purged meanwhile.
// It was a KV watch, which waits for as many messages as were pending
// when it started: a purged one never comes, and the listing waited its
// whole timeout (30 s) and failed; with the webhook sweep purging each
// delivered webhook's index key, its listing so. Here every key goes in
// one purge once the listing's consumer exists, before it can have read
// 20,000 keys.
func TestListingSurvivesPurges(t *testing.T) {
	s, _ := newStore(t, func(o *Options) { o.NoTracker = true })
	ctx := context.Background()
	st, err := s.js.Stream(ctx, "KV_"+jobsBucket)
	if err != nil {
		t.Fatal(err)
	}
	consumers := func() int {
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers
	}
	const n = 20_000
	for i := 0; i < n; i += 2000 {
		var ws []asyncWrite
		for j := i; j < i+2000; j++ {
			ws = append(ws, asyncWrite{bucket: jobsBucket, key: webhookIndexKey(fmt.Sprintf("j%05d", j)), value: []byte("x"), noCAS: true})
		}
		if _, err := s.writeAll(ctx, ws); err != nil {
			t.Fatal(err)
		}
	}
	before := consumers()
	listed := make(chan error, 1)
	go func() {
		_, err := s.listKeys(ctx, jobsBucket, webhookIndexFilter)
		listed <- err
	}()
	eventually(t, "the listing's consumer", func() bool { return consumers() > before })
	if err := st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+jobsBucket+"."+webhookIndexFilter)); err != nil {
		t.Fatal(err)
	}
	if err := <-listed; err != nil {
		t.Fatalf("a listing of %d keys purged meanwhile: %v", n, err)
	}
}
