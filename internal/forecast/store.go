package forecast

import (
	"context"
	"errors"
	"fmt"
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
}

// maxSnapshotBytes bounds what Load reads: 100,000 series at ~10 KB.
const maxSnapshotBytes = 1 << 30

// Load reads the file.
func (s FileStore) Load(context.Context) ([]byte, error) {
	st, err := os.Stat(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoSnapshot
	}
	if err != nil {
		return nil, fmt.Errorf("forecast: snapshot: %w", err)
	}
	if st.Size() > maxSnapshotBytes {
		return nil, fmt.Errorf("forecast: snapshot %s: %d bytes, more than %d", s.Path, st.Size(), maxSnapshotBytes)
	}
	b, err := os.ReadFile(s.Path)
	if err != nil {
		return nil, fmt.Errorf("forecast: snapshot: %w", err)
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
