package discovery

import (
	"bytes"
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

// fileSettle is how long a read after writes in place that would take
// targets away (fewer targets, an empty or unparsable file) must stay
// unchanged before it is applied: a file written in place (truncated,
// then written, maybe in several writes: `echo > file`, editors that do
// not rename) is read half-written when a pause between its writes
// outlasts fileDebounce, and a prefix of a YAML list parses as a shorter
// list. fileSettleHolds
// bounds the holds in a row of a file that keeps changing: the last
// read is applied then.
const (
	fileSettle      = time.Second
	fileSettleHolds = 5
)

// File is a watched file of targets, in the spirit of Prometheus file_sd:
// a JSON or YAML list of groups, each `targets` (host:port or a URL) with
// optional `weight`, `max_concurrency` and `upstream_model` overriding the
// template. The directory is watched, not the file, so a file replaced by
// rename (editors, `mv`, Kubernetes ConfigMaps) is seen; an unreadable or
// invalid file is reported as a failure naming file and line, and the last
// good set stands. After a good read, a read that follows writes to the
// file in place and would take targets away is held back until the file
// has stayed the same for fileSettle (a sink that is an UnsettledSink is
// told of each held read).
type File struct {
	Path     string
	Template Template
	// After is time.After (nil), injectable: the tests drive the
	// debounce and the settling.
	After func(time.Duration) <-chan time.Time
}

// UnsettledSink is a Sink told of a read a source holds back for now
// (File: one that would take targets away, until the file settles); the
// last set stands meanwhile. Optional: a source asks by type assertion.
type UnsettledSink interface {
	Unsettled(err error)
}

// unsettled tells sink of a read held back, when it listens.
func unsettled(sink Sink, err error) {
	if u, ok := sink.(UnsettledSink); ok {
		u.Unsettled(err)
	}
}

// Run reads the file, then again after every change in its directory,
// until ctx ends. Only a set that differs from the last one is reported,
// or the first good one after a failure or a hold (so their end is seen).
func (f File) Run(ctx context.Context, sink Sink) {
	after := f.After
	if after == nil {
		after = time.After
	}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		defer w.Close()
		err = w.Add(filepath.Dir(f.Path))
	}
	if err != nil {
		sink.Fail(fmt.Errorf("watch %s: %w (read once; changes need a reload)", f.Path, err))
	}
	r := &fileReads{f: f, sink: sink, after: after}
	r.read(false)
	if w == nil || err != nil {
		<-ctx.Done()
		return
	}
	var debounce <-chan time.Time
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
				debounce = after(fileDebounce) // the one before is dropped: a restart
			}
		case err, ok := <-w.Errors:
			if ok {
				sink.Fail(fmt.Errorf("watch %s: %w", f.Path, err))
			}
		case <-debounce:
			debounce = nil
			r.read(false)
		case <-r.settle:
			r.settle = nil
			r.read(true)
		}
	}
}

// fileReads is File.Run's state between reads: the set in use and a
// read held back. Run's goroutine alone uses it.
type fileReads struct {
	f     File
	sink  Sink
	after func(time.Duration) <-chan time.Time

	last   []endpoint.Spec // the set in use: the last one reported
	failed bool            // the last read failed: report the next set even if unchanged
	// held is the content of a read held back (nil: none), holds the
	// holds in a row; settle fires fileSettle after the hold.
	held   []byte
	holds  int
	settle <-chan time.Time
	// lastFile is the file the last read opened.
	lastFile os.FileInfo
}

// apply reports a read's set (or its failure) and ends any hold.
func (r *fileReads) apply(set []endpoint.Spec, err error) {
	// A hold that ends on the set in use is reported too: the sink sees
	// the hold end (the manager logs the next one).
	wasHeld := r.held != nil
	r.held, r.holds, r.settle = nil, 0, nil
	if err != nil {
		r.failed = true
		r.sink.Fail(err)
		return
	}
	if r.failed || wasHeld || r.last == nil || !slices.Equal(set, r.last) {
		r.failed, r.last = false, set
		r.sink.Update(slices.Clone(set))
	}
}

// read reads the file; a read of the file read last time (written in
// place) that would take targets away waits until the same content is
// read again once fileSettle has passed (settled), or until
// fileSettleHolds holds of changing content. A file replaced whole
// (renamed over, a ConfigMap's swap, removed and written anew) is
// another file than the one read last: read whole, applied at once. The
// file's identity tells it, not the events: they arrive late, and a read
// made before the write's own events came was taken for a replacement
// and applied half-written.
func (r *fileReads) read(settled bool) {
	data, set, info, err := r.f.read()
	replaced := info != nil && r.lastFile != nil && !os.SameFile(info, r.lastFile)
	if info != nil {
		r.lastFile = info
	}
	if r.last == nil || replaced || (err == nil && !removes(r.last, set)) {
		r.apply(set, err)
		return
	}
	switch {
	case settled && bytes.Equal(data, r.held):
		r.apply(set, err) // unchanged for fileSettle: meant
		return
	case r.held != nil && bytes.Equal(data, r.held):
	case r.holds+1 >= fileSettleHolds:
		r.apply(set, err)
		return
	default: // a new content to wait on
		r.held, r.holds, r.settle = data, r.holds+1, r.after(fileSettle)
	}
	if u, ok := r.sink.(UnsettledSink); ok {
		if err == nil {
			err = fmt.Errorf("targets file %s: %d targets, fewer than the %d in use", r.f.Path, len(set), len(r.last))
		}
		u.Unsettled(fmt.Errorf("held until the file has not changed for %s: %w", fileSettle, err))
	}
}

// removes tells whether next lacks a backend of last.
func removes(last, next []endpoint.Spec) bool {
	in := make(map[string]bool, len(next))
	for _, s := range next {
		in[s.Key()] = true
	}
	for _, s := range last {
		if !in[s.Key()] {
			return true
		}
	}
	return false
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

// read reads and parses the file; data is what was read (empty when
// it could not be opened), info the identity of the file read (nil when
// it could not be opened): taken of the open handle, it is the file the
// data came from even if another is renamed over it meanwhile.
func (f File) read() (data []byte, set []endpoint.Spec, info os.FileInfo, err error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return []byte{}, nil, nil, fmt.Errorf("targets file: %w", err)
	}
	defer fh.Close()
	info, err = fh.Stat()
	if err != nil {
		return []byte{}, nil, nil, fmt.Errorf("targets file: %w", err)
	}
	data, err = io.ReadAll(io.LimitReader(fh, maxFileBytes+1))
	if err != nil {
		return []byte{}, nil, info, fmt.Errorf("targets file: %w", err)
	}
	if len(data) > maxFileBytes {
		return data, nil, info, fmt.Errorf("targets file %s: larger than %d bytes", f.Path, maxFileBytes)
	}
	set, err = ParseTargets(data, f.Template)
	if err != nil {
		return data, nil, info, fmt.Errorf("%s:%w", f.Path, err)
	}
	return data, set, info, nil
}
