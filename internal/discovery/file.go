package discovery

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// maxFileBytes bounds a targets file: thousands of targets fit in a
// fraction of it; a larger file is a mistake, refused before it is read.
const maxFileBytes = 4 << 20

// fileDebounce coalesces the burst of events one save or one atomic
// rename makes into one read.
const fileDebounce = 100 * time.Millisecond

// File is a watched file of targets, in the spirit of Prometheus file_sd:
// a JSON or YAML list of groups, each `targets` (host:port or a URL) with
// optional `weight`, `max_concurrency` and `upstream_model` overriding the
// template. The directory is watched, not the file, so a file replaced by
// rename (editors, `mv`, Kubernetes ConfigMaps) is seen; an unreadable or
// invalid file is reported as a failure naming file and line, and the last
// good set stands.
type File struct {
	Path     string
	Template Template
}

// Run reads the file, then again after every change in its directory,
// until ctx ends. Only a set that differs from the last one is reported,
// or the first good one after a failure (so the failure is seen to end).
func (f File) Run(ctx context.Context, sink Sink) {
	w, err := fsnotify.NewWatcher()
	if err == nil {
		defer w.Close()
		err = w.Add(filepath.Dir(f.Path))
	}
	if err != nil {
		sink.Fail(fmt.Errorf("watch %s: %w (read once; changes need a reload)", f.Path, err))
	}
	var (
		last   []endpoint.Spec
		failed bool // the last read failed: report the next set even if unchanged
	)
	read := func() {
		set, err := f.read()
		if err != nil {
			failed = true
			sink.Fail(err)
			return
		}
		if failed || last == nil || !slices.Equal(set, last) {
			failed, last = false, set
			sink.Update(slices.Clone(set))
		}
	}
	read()
	if w == nil || err != nil {
		<-ctx.Done()
		return
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				<-ctx.Done()
				return
			}
			if f.concerns(ev) {
				timer.Reset(fileDebounce)
			}
		case err, ok := <-w.Errors:
			if ok {
				sink.Fail(fmt.Errorf("watch %s: %w", f.Path, err))
			}
		case <-timer.C:
			read()
		}
	}
}

// concerns tells the events that may change what the file holds: any on
// its own name, and any name created, removed or renamed in its directory
// (a ConfigMap swaps a symlink, `..data`, not the file's own name). Writes
// to the directory's other files are not: a log written there every few
// milliseconds would otherwise restart the debounce at each line and
// hold off the read for as long as it is written (a targets file
// replaced beside a curl writing a stream was read only when the stream
// ended, 12 s late).
func (f File) concerns(ev fsnotify.Event) bool {
	return filepath.Base(ev.Name) == filepath.Base(f.Path) ||
		ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)
}

// read parses the file.
func (f File) read() ([]endpoint.Spec, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("targets file: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("targets file: %w", err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("targets file %s: larger than %d bytes", f.Path, maxFileBytes)
	}
	set, err := ParseTargets(data, f.Template)
	if err != nil {
		return nil, fmt.Errorf("%s:%w", f.Path, err)
	}
	return set, nil
}
