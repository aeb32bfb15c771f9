package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxFileReopens bounds how often one read follows its file to a new
// copy: each reopen needs another rewrite, and a batch has few trackers.
const maxFileReopens = 3

// fileReader reads a file's content and survives the file being written
// again under it. Every tracker may finalize a batch, and finalization is
// idempotent by writing the same content under the same id (finalize.go):
// two trackers that both find the output file missing both write it. The
// object store's Put stores the content under a new NUID and then purges
// the old NUID's chunks, so a read that began on the old copy (its reader
// was given the batch the moment the first writer completed it) is left
// with no chunks to receive and ends, when nats.go's deadline passes,
// with "nats: timeout". A client saw its GET /v1/files/{id}/content stall
// for RequestTimeout and end short of Content-Length. fileReader then
// finds the file's new copy; if its content is the same (equal digest),
// it reopens it and skips the bytes already handed out.
type fileReader struct {
	s       *Store
	ctx     context.Context
	id      string
	cur     jetstream.ObjectResult
	nuid    string // of the copy being read
	digest  string // of the content, the same in every copy
	read    int64  // bytes handed out so far
	reopens int
}

func (s *Store) openFileReader(ctx context.Context, id string) (*fileReader, error) {
	res, err := s.files.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	info, err := res.Info()
	if err != nil {
		res.Close()
		return nil, err
	}
	return &fileReader{s: s, ctx: ctx, id: id, cur: res, nuid: info.NUID, digest: info.Digest}, nil
}

func (f *fileReader) Read(p []byte) (int, error) {
	n, err := f.cur.Read(p)
	f.read += int64(n)
	if err == nil || err == io.EOF || !isReadTimeout(err) || f.reopens >= maxFileReopens || f.ctx.Err() != nil {
		return n, err
	}
	if rerr := f.reopen(); errors.Is(rerr, errNotRewritten) {
		return n, err
	} else if rerr != nil {
		return n, errors.Join(err, rerr)
	}
	return n, nil
}

// reopen continues the read on the file's new copy, if a rewrite made one
// with the same content; errNotRewritten otherwise.
func (f *fileReader) reopen() error {
	info, err := f.s.files.GetInfo(f.ctx, f.id)
	if err != nil {
		return fmt.Errorf("jobs: looking for a new copy of file %s: %w", f.id, err)
	}
	if info.NUID == f.nuid || info.Digest != f.digest {
		return errNotRewritten
	}
	next, err := f.s.files.Get(f.ctx, f.id)
	if err != nil {
		return fmt.Errorf("jobs: reopening file %s: %w", f.id, err)
	}
	if _, err := io.CopyN(io.Discard, next, f.read); err != nil {
		next.Close()
		return fmt.Errorf("jobs: skipping %d bytes of file %s read before: %w", f.read, f.id, err)
	}
	f.cur.Close()
	f.cur, f.nuid = next, info.NUID
	f.reopens++
	f.s.log.Debug("file rewritten during a read; continued on the new copy", "file", f.id, "offset", f.read)
	return nil
}

// errNotRewritten: a read timed out on a copy that is still the file's.
var errNotRewritten = errors.New("jobs: the file was not rewritten")

// isReadTimeout reports an object read that ended at nats.go's deadline:
// nats.ErrTimeout, or the pipe's deadline error when the read saw the
// deadline before the context did.
func isReadTimeout(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded)
}

func (f *fileReader) Close() error { return f.cur.Close() }
