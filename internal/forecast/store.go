package forecast

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Store keeps the latest snapshot across restarts. The file store is the
// one used today; a Redis one would satisfy the same two methods.
type Store interface {
	// Load returns the stored snapshot, or ErrNoSnapshot.
	Load(ctx context.Context) ([]byte, error)
	// Save replaces the stored snapshot.
	Save(ctx context.Context, data []byte) error
}

// ErrNoSnapshot is returned by Store.Load when nothing was saved yet.
var ErrNoSnapshot = errors.New("forecast: no snapshot stored")

// FileStore keeps the snapshot in one file, replaced atomically (a
// temporary file renamed over it), so a crash mid-save leaves the old one.
type FileStore struct {
	Path string
	// MaxBytes bounds what Load reads: a larger file is refused before a
	// byte of it is read. Set it to the forecaster's
	// Config.MaxSnapshotBytes, the most a snapshot it writes can take;
	// 0: DefaultMaxSnapshotBytes.
	MaxBytes int64
}

// DefaultMaxSnapshotBytes is FileStore.MaxBytes when unset: the snapshot
// of the default configuration (256 series) is under 6 MB.
const DefaultMaxSnapshotBytes = 64 << 20

// Load reads the file.
func (s FileStore) Load(context.Context) ([]byte, error) {
	limit := s.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxSnapshotBytes
	}
	f, err := os.Open(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoSnapshot
	}
	if err != nil {
		return nil, fmt.Errorf("forecast: snapshot: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > limit {
		return nil, fmt.Errorf("forecast: snapshot %s: %d bytes, more than the %d a snapshot of this configuration can take", s.Path, st.Size(), limit)
	}
	// Read through a limit as well: the file may grow after the Stat.
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("forecast: snapshot: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("forecast: snapshot %s: more than the %d bytes a snapshot of this configuration can take", s.Path, limit)
	}
	return b, nil
}

// Save writes the file, creating its directory if needed.
func (s FileStore) Save(_ context.Context, data []byte) error {
	dir := filepath.Dir(s.Path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("forecast: snapshot: %w", err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(s.Path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("forecast: snapshot: %w", err)
	}
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), s.Path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("forecast: snapshot: %w", werr)
	}
	return nil
}

// SaveTo snapshots f into store.
func (f *Forecaster) SaveTo(ctx context.Context, store Store) error {
	return store.Save(ctx, f.Snapshot())
}

// LoadFrom restores f from store. A missing snapshot is not an error
// (found is false); a corrupt or incompatible one is, and leaves f as it
// was.
func (f *Forecaster) LoadFrom(ctx context.Context, store Store) (found bool, err error) {
	b, err := store.Load(ctx)
	if errors.Is(err, ErrNoSnapshot) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := f.Restore(b); err != nil {
		return false, err
	}
	return true, nil
}
