package jobs

import (
	"context"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// streamHandle is a KV bucket's stream, looked up once (a stream info
// request) and kept: a handle is its name and the connection.
type streamHandle struct {
	mu sync.Mutex // held across the lookup
	st jetstream.Stream
}

func (h *streamHandle) get(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.Stream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st != nil {
		return h.st, nil
	}
	st, err := js.Stream(ctx, "KV_"+bucket)
	if err == nil {
		h.st = st
	}
	return st, err
}

// activeIndex lists the active-batch index: the ids whose a.<id> subject
// the batch bucket's stream holds, read from the stream's state (one
// request) and not with a KV listing (a watch delivering the last
// message of every subject, then a nil). A listing's watch counts the
// messages pending when it starts and waits for them all: one purged
// before it was delivered (forget purges the entry it just deleted) is
// never delivered, and the listing waited its whole timeout (30 s) for
// the nil, the tracker's loop with it. The state lists a subject whose
// last message is a delete marker too: one between forget's delete and
// its purge, or one written before forget purged (they stay for
// queue.retention); the tracker's scan reads each entry and purges those
// (purgeIndexMarker).
func (s *Store) activeIndex(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	st, err := s.batchStream.get(ctx, s.js, batchBucket)
	if err != nil {
		return nil, err
	}
	prefix := "$KV." + batchBucket + "."
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(prefix+activeKey("*")))
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		ids = append(ids, strings.TrimPrefix(subj, prefix+activeKey("")))
	}
	return ids, nil
}

// purgeIndexMarker purges id's index subject, whose entry is deleted: a
// batch's entry is written once and never again once deleted.
func (s *Store) purgeIndexMarker(ctx context.Context, id string) error {
	st, err := s.batchStream.get(ctx, s.js, batchBucket)
	if err == nil {
		err = st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+batchBucket+"."+activeKey(id)))
	}
	return err
}
