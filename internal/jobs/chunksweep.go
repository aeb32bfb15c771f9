package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A file write (ObjectStore.Put) sends its chunks on a subject of their
// own, named by a NUID new at each Put, and commits them with one metadata
// message after the last. A write that never commits leaves its chunks
// with nothing pointing at them: a process killed mid-write, or a Put cut
// by the gateway's shutdown (nats.go purges them with the cancelled
// context, which fails), or a batch writer that lost its claim and whose
// abort could not reach the server. They counted against
// queue.max_store_bytes until the stream's retention ended.
//
// The tracker sweeps them: a chunk subject that no file's current
// metadata names and whose last chunk is older than OrphanChunkAge is
// purged. The age is what keeps a write in progress safe (its chunks are
// not named until its commit): every write sends its chunks one after
// another and commits right after the last, so a live write's newest chunk
// is seconds old, and a batch writer whose chunks stop for longer than
// its claim's lease (30s) gives up instead of committing (fileclaim.go).
// An hour also covers clocks apart between gateway and server.

// DefaultOrphanChunkAge is Options.OrphanChunkAge's default.
const DefaultOrphanChunkAge = time.Hour

// orphanSweepEvery is how often a tracker sweeps, the first time as it
// starts (a restart after a crash is when orphans are new).
const orphanSweepEvery = time.Hour

// fileChunksPrefix is the chunk subjects' common prefix.
const fileChunksPrefix = "$O." + filesBucket + ".C."

// sweepOrphanChunks purges the chunks of writes that never committed and
// returns how many copies it purged. Several trackers may sweep at once:
// a purge of what another purged is a no-op.
func (s *Store) sweepOrphanChunks(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*s.o.RequestTimeout)
	defer cancel()
	stream, err := s.js.Stream(ctx, filesStream)
	if err != nil {
		return 0, fmt.Errorf("jobs: opening the files stream: %w", err)
	}
	// The chunk subjects first, the files' copies after: a write that
	// commits in between is named by the list; one that commits after
	// it has a chunk seconds old, which the age check keeps.
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(fileChunksPrefix+">"))
	if err != nil {
		return 0, fmt.Errorf("jobs: listing file chunks: %w", err)
	}
	if len(info.State.Subjects) == 0 {
		return 0, nil
	}
	named := map[string]bool{}
	objs, err := s.files.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return 0, fmt.Errorf("jobs: listing files: %w", err)
	}
	for _, o := range objs {
		named[o.NUID] = true
	}
	purged := 0
	for subject := range info.State.Subjects {
		if named[strings.TrimPrefix(subject, fileChunksPrefix)] {
			continue
		}
		last, err := stream.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // purged since
		}
		if err != nil {
			return purged, fmt.Errorf("jobs: reading %s: %w", subject, err)
		}
		if s.now().Sub(last.Time) < s.o.OrphanChunkAge {
			continue // maybe a write in progress
		}
		// Up to the chunk looked at: anything after it is not this check's.
		if err := stream.Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(last.Sequence+1)); err != nil {
			return purged, fmt.Errorf("jobs: purging %s: %w", subject, err)
		}
		purged++
		s.log.Info("purged the chunks of a file write that never committed", "subject", subject,
			"last_chunk_at", last.Time)
	}
	if purged > 0 {
		s.stats.orphanChunksPurged.Add(uint64(purged))
		s.forgetUsage() // the space is free now
	}
	return purged, nil
}
