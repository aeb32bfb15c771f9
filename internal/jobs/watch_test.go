package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// orphanedWatcher is the state nats.go leaves a KV watcher in when the
// context given to Watch ends between subscribing and installing the
// handler that closes Updates: the subscription is gone (Stop reports it)
// and the channel is never closed. The race itself cannot be forced from
// outside the library (it was reproduced by widening that window in a
// patched copy: 19 of 40 listings of an empty bucket hung in cleanup).
type orphanedWatcher struct{ updates chan jetstream.KeyValueEntry }

func (w orphanedWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.updates }
func (w orphanedWatcher) Stop() error                             { return nats.ErrBadSubscription }

func TestStopWatchReturnsWhenTheLibraryNeverClosesUpdates(t *testing.T) {
	w := orphanedWatcher{updates: make(chan jetstream.KeyValueEntry, 256)}
	w.updates <- nil // the end-of-initial-values marker, unread
	done := make(chan struct{})
	go func() {
		stopWatch(w)
		close(done)
	}()
	// A hang detector, not a speed limit: stopWatch does no waiting here.
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("stopWatch waited for a channel nobody closes")
	}
}

func TestStopWatchFreesADeliveryBlockedOnAFullChannel(t *testing.T) {
	srv := startServer(t, t.TempDir())
	o := testOptions(srv.ClientURL())
	o.NoTracker = true
	s := openStore(t, o)
	ctx := context.Background()
	// More keys than the watcher's 256-entry buffer, so the library's
	// delivery goroutine blocks handing over the rest.
	keys := make([]asyncWrite, 600)
	for i := range keys {
		keys[i] = asyncWrite{bucket: batchBucket, key: activeKey(fmt.Sprintf("b%04d", i)), value: []byte("t"), noCAS: true}
	}
	if _, err := s.writeAll(ctx, keys); err != nil {
		t.Fatal(err)
	}
	w, err := s.batch.Watch(ctx, "a.*", jetstream.MetaOnly())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the watcher's buffer to fill", func() bool { return len(w.Updates()) == cap(w.Updates()) })
	stopWatch(w)
	// After Stop the library hands over at most two more updates; a
	// channel left fuller than that would keep its delivery goroutine
	// (and the subscription) blocked for good, which TestMain's leak
	// check would also report.
	if n := len(w.Updates()); n > 2 {
		t.Fatalf("%d updates left in the watcher's channel after stopWatch", n)
	}
}
