package jobs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The object store's layout, as nats.go lays it out (object.go,
// objNameTmpl and objChunksPreTmpl): a file's content is the messages on
// its copy's chunk subject, in order; the copy is named by its NUID, new
// at every Put.
const filesStream = "OBJ_" + filesBucket

func fileChunksSubject(nuid string) string { return "$O." + filesBucket + ".C." + nuid }

// DefaultFileReadIdle is Options.FileReadIdle's default. A chunk (128 KiB)
// is on the server when the read asks for it, and a lost consumer is
// replaced after two missed heartbeats (10 s): 30 s without a chunk means
// the content is gone or the server is stuck, not that it is slow. The
// client's own pace does not count against it (only the wait for a chunk
// the reader asked for does), so a slow download is never cut by it.
const DefaultFileReadIdle = 30 * time.Second

// fileReadAhead is how many chunks a read asks the server for ahead of
// its reader: what one download holds in memory (4 x 128 KiB), enough to
// keep the server's answers coming between round trips.
const fileReadAhead = 4

// maxFileReopens bounds how often one read follows its file to a new
// copy: each reopen needs another rewrite, and a batch has few trackers.
const maxFileReopens = 3

// ErrFileUnreadable is a stored file whose content cannot be handed out
// whole (errFileStalled, errFileCorrupt): a fault of the store, not of
// the request. Its reader must answer an error before the status, or cut
// the response after it, never a short or altered file.
var ErrFileUnreadable = errors.New("jobs: the file's stored content cannot be read whole")

var (
	errFileStalled = fmt.Errorf("jobs: no file content arrived: %w", ErrFileUnreadable)
	errFileCorrupt = fmt.Errorf("jobs: file content does not match its size or digest: %w", ErrFileUnreadable)
)

// fileReader reads a file's content chunk by chunk from the object
// store's stream, in place of ObjectStore.Get, whose read is bounded as a
// whole by RequestTimeout when ctx has no deadline (nats.go wraps it so):
// a download of a large file to a slow client was cut at 5 s with
// "nats: timeout". Here nothing bounds the whole read; each chunk must
// arrive within Options.FileReadIdle of being waited for; ctx ends the
// read at once; at most fileReadAhead chunks are held; and the content is
// checked against the file's size and SHA-256 digest before its last
// chunk is handed out.
//
// It also survives the file being written again under it. Every tracker
// may finalize a batch, and finalization is idempotent by writing the
// same content under the same id (finalize.go): two trackers that both
// find the output file missing both write it. Put stores the content
// under a new NUID and then purges the old NUID's chunks, so a read of
// the old copy receives no more chunks. When none has come for a probe
// interval the reader looks the file up again: a new copy with the same
// digest is read on from the offset already handed out; a deleted file
// or other content ends the read with an error.
type fileReader struct {
	s       *Store
	ctx     context.Context
	id      string
	idle    time.Duration
	info    *jetstream.ObjectInfo // the copy being read
	cons    jetstream.Consumer    // nil once stopped, or for an empty file
	msgs    jetstream.MessagesContext
	unwatch func() bool // stops stopping msgs when ctx ends
	chunk   []byte      // the part of the current chunk not yet handed out
	chunks  uint32      // chunks of info received
	got     uint64      // bytes of info received
	skip    uint64      // bytes of a new copy handed out before from the old
	out     uint64      // bytes handed out
	sum     hash.Hash   // of the bytes handed out and f.chunk
	reopens int
	err     error // once set, every Read returns it
}

func (s *Store) openFileReader(ctx context.Context, id string) (*fileReader, error) {
	info, err := s.fileInfo(ctx, id)
	if err != nil {
		return nil, err
	}
	f := &fileReader{s: s, ctx: ctx, id: id, idle: s.o.FileReadIdle, sum: sha256.New()}
	if info, err = f.stored(info); err != nil {
		return nil, err
	}
	if err := f.open(info); err != nil {
		return nil, err
	}
	return f, nil
}

// stored checks, before the read waits for them, that the stream holds
// every chunk of the copy info names (one stream info request): a chunk
// lost from the store was waited for FileReadIdle (30 s) before the
// read's 500. A copy a rewrite purged meanwhile is followed to the new
// one, nothing being handed out yet. A count that cannot be had is not
// fatal: the read finds out as before.
func (f *fileReader) stored(info *jetstream.ObjectInfo) (*jetstream.ObjectInfo, error) {
	for {
		if info.Chunks == 0 {
			return info, nil
		}
		n, err := f.s.chunksStored(f.ctx, info.NUID)
		if err != nil {
			f.s.log.Debug("counting a file's stored chunks", "file", f.id, "err", err)
			return info, nil
		}
		if n >= uint64(info.Chunks) {
			return info, nil
		}
		ctx, cancel := f.s.requestContext(f.ctx)
		now, err := f.s.fileInfo(ctx, f.id)
		cancel()
		switch {
		case err != nil:
			return nil, err
		case now.NUID == info.NUID:
			return nil, fmt.Errorf("jobs: file %s: %d of its %d chunks stored (copy %s): %w", f.id, n, info.Chunks, info.NUID, errFileCorrupt)
		case f.reopens >= maxFileReopens:
			return nil, fmt.Errorf("jobs: file %s rewritten more than %d times as its read began: %w", f.id, maxFileReopens, errFileStalled)
		}
		f.reopens++
		info = now
	}
}

// chunksStored is how many chunks of the copy nuid the files stream holds.
func (s *Store) chunksStored(ctx context.Context, nuid string) (uint64, error) {
	ctx, cancel := s.requestContext(ctx)
	defer cancel()
	st, err := s.js.Stream(ctx, filesStream)
	if err != nil {
		return 0, err
	}
	subject := fileChunksSubject(nuid)
	si, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, err
	}
	return si.State.Subjects[subject], nil
}

// fileInfo is the file's current copy. Links are refused: the store
// makes none (Put cannot, and nothing calls AddLink), and a link's chunks
// are another object's.
func (s *Store) fileInfo(ctx context.Context, id string) (*jetstream.ObjectInfo, error) {
	info, err := s.files.GetInfo(ctx, id)
	if err != nil {
		return nil, err
	}
	if info.Opts != nil && info.Opts.Link != nil {
		return nil, fmt.Errorf("jobs: file %s is a link, which the store does not make: %w", id, errFileCorrupt)
	}
	return info, nil
}

// open starts reading the copy info: an ordered consumer on its chunk
// subject, fileReadAhead chunks ahead.
func (f *fileReader) open(info *jetstream.ObjectInfo) error {
	f.info, f.chunks, f.got, f.chunk = info, 0, 0, nil
	if info.Chunks == 0 {
		return f.verify()
	}
	ctx, cancel := f.s.requestContext(f.ctx)
	defer cancel()
	cons, err := f.s.js.OrderedConsumer(ctx, filesStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{fileChunksSubject(info.NUID)},
		// A consumer lost to a reconnect is made again from where the
		// read is; past 3 failed attempts the read fails rather than
		// retrying for ever.
		MaxResetAttempts: 3,
	})
	if err != nil {
		return fmt.Errorf("jobs: reading file %s: %w", f.id, err)
	}
	msgs, err := cons.Messages(jetstream.PullMaxMessages(fileReadAhead))
	if err != nil {
		f.cons = cons
		f.stop()
		return fmt.Errorf("jobs: reading file %s: %w", f.id, err)
	}
	// ctx's end stops msgs at once, even while Next is busy remaking a
	// lost consumer (which waits out backoffs, not ctx).
	f.cons, f.msgs, f.unwatch = cons, msgs, context.AfterFunc(f.ctx, msgs.Stop)
	return nil
}

// requestContext bounds one JetStream request made for ctx, as nats.go
// bounds one without a deadline.
func (s *Store) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.o.RequestTimeout)
}

func (f *fileReader) Read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	for len(f.chunk) == 0 {
		if f.chunks == f.info.Chunks {
			f.stop()
			f.err = io.EOF
			return 0, f.err
		}
		if err := f.nextChunk(); err != nil {
			f.err = err
			f.stop()
			return 0, err
		}
	}
	n := copy(p, f.chunk)
	f.chunk = f.chunk[n:]
	f.out += uint64(n)
	return n, nil
}

// verify checks the content against the copy's size and digest once the
// last chunk is in, before any of that chunk is handed out: a reader of a
// wrong file gets an error and a short read, never the whole of a
// Content-Length of other bytes. f.sum covers the bytes handed out and
// f.chunk, which a new copy is followed for only when its digest is the
// old one's.
func (f *fileReader) verify() error {
	whole := f.out + uint64(len(f.chunk))
	if digest := jetstream.GetObjectDigestValue(f.sum); whole != f.info.Size || f.got != f.info.Size || digest != f.info.Digest {
		return fmt.Errorf("jobs: file %s: %d bytes, digest %s; want %d, %s: %w", f.id,
			whole, digest, f.info.Size, f.info.Digest, errFileCorrupt)
	}
	return nil
}

// nextChunk waits for the copy's next chunk and makes it f.chunk, less
// what a new copy repeats of the bytes handed out. It is called only once
// f.chunk is all handed out, so a reopen drops nothing f.sum holds that
// was not handed out.
func (f *fileReader) nextChunk() error {
	probe := min(time.Second, f.idle/4)
	var waited time.Duration
	for {
		wait := min(probe, f.idle-waited)
		ctx, cancel := context.WithTimeout(f.ctx, wait)
		msg, err := f.msgs.Next(jetstream.NextContext(ctx))
		cancel()
		switch {
		case err == nil:
			return f.take(msg.Data())
		case f.ctx.Err() != nil:
			return fmt.Errorf("jobs: reading file %s: %w", f.id, f.ctx.Err())
		case !errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("jobs: reading file %s: %w", f.id, err)
		}
		waited += wait
		if waited >= f.idle {
			return fmt.Errorf("jobs: file %s: chunk %d of %d (copy %s) not received in %s: %w",
				f.id, f.chunks+1, f.info.Chunks, f.info.NUID, f.idle, errFileStalled)
		}
		if reopened, err := f.followRewrite(); err != nil {
			return err
		} else if reopened {
			waited = 0
		}
	}
}

func (f *fileReader) take(data []byte) error {
	f.chunks++
	f.got += uint64(len(data))
	if f.got > f.info.Size {
		return fmt.Errorf("jobs: file %s: %d bytes received, more than its %d: %w", f.id, f.got, f.info.Size, errFileCorrupt)
	}
	drop := min(f.skip, uint64(len(data)))
	f.skip -= drop
	f.chunk = data[drop:]
	f.sum.Write(f.chunk)
	if f.chunks == f.info.Chunks {
		return f.verify()
	}
	return nil
}

// followRewrite looks the file up after a wait for a chunk: if a rewrite
// replaced the copy being read with the same content, the read goes on
// on the new copy (true); if the copy is still the file's, it waits on
// (false). A deleted file, or one rewritten with other content, ends it.
func (f *fileReader) followRewrite() (bool, error) {
	ctx, cancel := f.s.requestContext(f.ctx)
	info, err := f.s.fileInfo(ctx, f.id)
	cancel()
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return false, fmt.Errorf("jobs: file %s was deleted during its read: %w", f.id, ErrNotFound)
	case err != nil:
		// Not fatal: the read waits on, and FileReadIdle still bounds it.
		f.s.log.Debug("looking for a new copy of a file being read", "file", f.id, "err", err)
		return false, nil
	case info.NUID == f.info.NUID:
		return false, nil
	case info.Digest != f.info.Digest || info.Size != f.info.Size:
		return false, fmt.Errorf("jobs: file %s was rewritten with other content during its read: %w", f.id, errFileCorrupt)
	case f.reopens >= maxFileReopens:
		return false, fmt.Errorf("jobs: file %s rewritten more than %d times during its read: %w", f.id, maxFileReopens, errFileStalled)
	}
	f.stop()
	f.reopens++
	f.skip = f.out
	if err := f.open(info); err != nil {
		return false, err
	}
	f.s.log.Debug("file rewritten during a read; continued on the new copy", "file", f.id, "offset", f.out)
	return true, nil
}

// stop ends the consumer: its goroutines at once, the server's consumer
// with one request (left alone, it would stay until its inactivity
// threshold).
func (f *fileReader) stop() {
	if f.cons == nil {
		return
	}
	if f.msgs != nil {
		f.unwatch()
		f.msgs.Stop()
	}
	if ci := f.cons.CachedInfo(); ci != nil {
		ctx, cancel := f.s.requestContext(context.WithoutCancel(f.ctx))
		if err := f.s.js.DeleteConsumer(ctx, filesStream, ci.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			f.s.log.Debug("deleting a file read's consumer", "file", f.id, "err", err)
		}
		cancel()
	}
	f.cons, f.msgs, f.unwatch = nil, nil, nil
}

func (f *fileReader) Close() error {
	f.stop()
	if f.err == nil {
		f.err = errors.New("jobs: file reader closed")
	}
	return nil
}
