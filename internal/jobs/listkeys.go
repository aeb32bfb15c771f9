package jobs

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// listBatch is how many keys one request of a listing reads.
const listBatch = 1024

// listKeys returns the keys of bucket matching filter: the last message
// of each subject, delete and purge markers skipped, read by a pull
// consumer of its own with no-wait requests until one returns nothing
// or a message says nothing is left (an empty answer confirmed by the
// consumer's own count of what it has left to deliver).
//
// It was a KV watch (and jetstream's ListKeysFiltered, which cannot tell
// a complete listing from one cut short, is one too): a watch counts the
// messages pending when it starts and sends its end-of-listing nil once
// it has received that many, and a message purged before it was
// delivered never is. The webhook sweep's listing raced the purge of
// each delivered webhook's index key so (unindexWebhook): 3 listings of
// 5 with 2,000 keys purged during them waited their whole timeout (30 s)
// and failed, the sweep with them (TestListingSurvivesPurges). A no-wait
// request answers with what the consumer has now, a purged message not
// among it.
func (s *Store) listKeys(ctx context.Context, bucket, filter string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	prefix := "$KV." + bucket + "."
	stream := "KV_" + bucket
	cons, err := s.js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		FilterSubject: prefix + filter,
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:     jetstream.AckNonePolicy,
		HeadersOnly:   true,
		MemoryStorage: true,
		// Gone by itself should the delete below not reach the server.
		InactiveThreshold: listTimeout,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer dcancel()
		if err := s.js.DeleteConsumer(dctx, stream, cons.CachedInfo().Name); err != nil {
			s.log.Debug("deleting a listing's consumer (its inactivity removes it)", "bucket", bucket, "err", err)
		}
	}()
	seen := map[string]bool{}
	var keys []string
	pause := time.Duration(0) // between empty answers while the consumer says more is pending
	for {
		batch, err := cons.FetchNoWait(listBatch)
		if err != nil {
			return nil, err
		}
		n, last := 0, false
		for m := range batch.Messages() {
			n++
			if meta, err := m.Metadata(); err == nil && meta.NumPending == 0 {
				last = true
			}
			if op := m.Headers().Get("KV-Operation"); op == "DEL" || op == "PURGE" || m.Headers().Get("Nats-Marker-Reason") != "" {
				continue
			}
			if k := strings.TrimPrefix(m.Subject(), prefix); !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, err
		}
		if last {
			return keys, nil
		}
		if n == 0 {
			// An empty answer is the end only if the consumer agrees:
			// nothing left to deliver (a purged message is not counted).
			info, err := cons.Info(ctx)
			if err != nil {
				return nil, err
			}
			if info.NumPending == 0 {
				return keys, nil
			}
			// Pending but not delivered yet: ask again after a pause
			// (5 ms doubling to 100 ms), not in a loop of round trips
			// to the server for the rest of listTimeout.
			pause = min(max(2*pause, 5*time.Millisecond), 100*time.Millisecond)
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
			continue
		}
		pause = 0
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}
