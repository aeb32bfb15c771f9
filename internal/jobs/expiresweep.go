package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// A file's expires_at comes from its upload's expires_after, its batch's
// output_expires_after, or retention (the default and the bound). Past it
// the file is gone for clients at once (File answers ErrNotFound); its
// content stays in the object store until this sweep deletes it, run by
// the tracker with the orphan-chunk sweep (tracker.sweep: at start, then
// every orphanSweepEvery). Files that live as long as retention need no
// sweep: the bucket's TTL removes them then.

// sweepExpiredFiles deletes the content of every file past its
// expires_at and returns how many it deleted. Several trackers may sweep
// at once: deleting a file another deleted is a no-op.
func (s *Store) sweepExpiredFiles(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*s.o.RequestTimeout)
	defer cancel()
	infos, err := s.files.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("jobs: listing files: %w", err)
	}
	deleted := 0
	for _, info := range infos {
		if info.Deleted || !s.expired(fileFromInfo(info)) {
			continue
		}
		err := s.deleteFile(ctx, info.Name)
		if errors.Is(err, ErrNotFound) {
			continue // deleted since
		}
		if err != nil {
			return deleted, err
		}
		deleted++
	}
	if deleted > 0 {
		s.stats.expiredFilesDeleted.Add(uint64(deleted))
		s.log.Info("deleted expired files", "files", deleted)
	}
	return deleted, nil
}
