package jobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// putTestFile stores content as a batch output file with id under s. Its
// ctx has a deadline, a far one: without, each chunk's publish must be
// acknowledged within RequestTimeout, which a loaded machine can miss.
func putTestFile(t *testing.T, s *Store, id string, content []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := &File{ID: id, Tenant: "acme", Purpose: "batch_output", Filename: "b_output.jsonl"}
	if _, err := s.files.Put(ctx, fileMeta(f, "batch_x"), bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
}

func randomContent(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// dropLastChunk deletes the file's last chunk from the stream: its
// metadata still promises it, and a read waits for it.
func dropLastChunk(t *testing.T, s *Store, id string) {
	t.Helper()
	ctx := context.Background()
	info, err := s.files.GetInfo(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.js.Stream(ctx, filesStream)
	if err != nil {
		t.Fatal(err)
	}
	last, err := st.GetLastMsgForSubject(ctx, fileChunksSubject(info.NUID))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, last.Sequence); err != nil {
		t.Fatal(err)
	}
}

// A batch finalized by two trackers at once gets its output file written
// twice; the second Put purges the first copy's chunks. A download begun
// on the first copy used to stall until nats.go's deadline and end with
// "nats: timeout" (TestBatchFinalizedByAnotherProcess failed so); it
// continues on the second copy now, found when no chunk came for a probe
// interval.
func TestFileContentSurvivesRewrite(t *testing.T) {
	srv := startServer(t, t.TempDir())
	o := testOptions(srv.ClientURL())
	o.NoTracker = true
	writer, reader := openStore(t, o), openStore(t, o)
	ctx := context.Background()
	// The reader asks for fileReadAhead chunks (512 KiB) ahead: most of
	// 6 MiB is undelivered when the rewrite purges it.
	content := randomContent(t, 6<<20)
	putTestFile(t, writer, "file-rewritten", content)
	rc, err := reader.FileContent(ctx, "acme", "file-rewritten")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(rc, first); err != nil {
		t.Fatal(err)
	}
	putTestFile(t, writer, "file-rewritten", content) // as the second finalizing tracker does
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading on after the rewrite: %v", err)
	}
	if got := append(first, rest...); !bytes.Equal(got, content) {
		t.Fatalf("read %d bytes, not the %d written", len(got), len(content))
	}
	if fr := rc.(*boundReader).ReadCloser.(*fileReader); fr.reopens != 1 {
		t.Fatalf("%d reopens, want 1: the rewrite did not cut the first read", fr.reopens)
	}
}

// A file rewritten with other content, or deleted, under a read ends the
// read with an error, not with a mix of two files.
func TestFileContentRewrittenOtherwise(t *testing.T) {
	s, _ := newStore(t, func(o *Options) { o.NoTracker = true })
	ctx := context.Background()
	content := randomContent(t, 2<<20)
	for _, tc := range []struct {
		name   string
		change func(id string)
		want   error
	}{
		{"other content", func(id string) { putTestFile(t, s, id, randomContent(t, len(content))) }, errFileCorrupt},
		{"deleted", func(id string) {
			if err := s.files.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
		}, ErrNotFound},
	} {
		id := "file-" + strings.ReplaceAll(tc.name, " ", "")
		putTestFile(t, s, id, content)
		rc, err := s.FileContent(ctx, "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rc, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		tc.change(id)
		got, err := io.ReadAll(rc)
		rc.Close()
		if !errors.Is(err, tc.want) || len(got)+1 >= len(content) {
			t.Fatalf("%s: read %d more bytes, %v; want a short read and %v", tc.name, len(got), err, tc.want)
		}
	}
}

// ObjectStore.Get bounds a whole read by RequestTimeout when ctx has no
// deadline (an HTTP request's has none): a download of a large file to a
// slow client was cut there with "nats: timeout". A read now takes as long
// as its reader does. Here the reader pauses 1.5 RequestTimeouts between
// two reads (real time: the bound it outlasts is nats.go's wall clock).
// RequestTimeout is 2 s; the store's setup has a far deadline and opening
// the file is retried, so that a loaded machine fails neither: only the
// read after the pause is under test.
func TestFileReadOutlastsRequestTimeout(t *testing.T) {
	const requestTimeout = 2 * time.Second
	srv := startServer(t, t.TempDir())
	o := testOptions(srv.ClientURL())
	o.NoTracker = true
	content := randomContent(t, 2<<20)
	putTestFile(t, openStore(t, o), "file-slow", content)
	o.RequestTimeout = requestTimeout
	setup, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(setup, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var rc io.ReadCloser
	for attempt := 1; ; attempt++ {
		if rc, err = s.FileContent(context.Background(), "acme", "file-slow"); err == nil || attempt == 5 || !IsUnavailable(err) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	first := make([]byte, 1000)
	if _, err := io.ReadFull(rc, first); err != nil {
		t.Fatal(err)
	}
	<-time.After(requestTimeout * 3 / 2) // the slow client
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading on after %s: %v", requestTimeout*3/2, err)
	}
	if got := append(first, rest...); !bytes.Equal(got, content) {
		t.Fatalf("read %d bytes, not the %d written", len(got), len(content))
	}
}

// signalWriter counts what it is given and closes reached once it has
// had at least want bytes.
type signalWriter struct {
	n, want int64
	reached chan struct{}
	once    atomic.Bool
}

func (w *signalWriter) Write(p []byte) (int, error) {
	if atomic.AddInt64(&w.n, int64(len(p))) >= w.want && w.once.CompareAndSwap(false, true) {
		close(w.reached)
	}
	return len(p), nil
}

// A read waiting for a chunk ends when its ctx does (the client went
// away), long before FileReadIdle; its consumer is gone from the server
// and its goroutines end.
func TestFileReadCancelled(t *testing.T) {
	s, _ := newStore(t, func(o *Options) { o.FileReadIdle = time.Hour; o.NoTracker = true })
	content := randomContent(t, 1<<20) // 8 chunks
	putTestFile(t, s, "file-stalled", content)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := s.FileContent(ctx, "acme", "file-stalled")
	if err != nil {
		t.Fatal(err)
	}
	dropLastChunk(t, s, "file-stalled") // once open: a file opened short fails at once (TestFileMissingChunkFailsAtOpen)
	sink := &signalWriter{want: int64(len(content)) - 128<<10, reached: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(sink, rc)
		done <- err
	}()
	<-sink.reached // all but the missing chunk: the read now waits for it
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read ended with %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute): // FileReadIdle is an hour
		t.Fatal("the read did not end with its context")
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := s.js.Stream(context.Background(), filesStream)
	if err != nil {
		t.Fatal(err)
	}
	names := st.ConsumerNames(context.Background())
	for name := range names.Name() {
		t.Errorf("consumer %s left on the files stream", name)
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the read's goroutines to end", func() bool {
		buf := make([]byte, 8<<20)
		return !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("jetstream.(*pullSubscription)"))
	})
}

// A file whose content does not match its metadata is an error, never a
// whole Content-Length of other bytes: a wrong digest is found before the
// last chunk is handed out (a missing chunk: TestFileMissingChunkFailsAtOpen).
func TestFileReadCorrupt(t *testing.T) {
	ctx := context.Background()
	content := randomContent(t, 300<<10) // 3 chunks
	for _, tc := range []struct {
		name    string
		idle    time.Duration // FileReadIdle: short where the test waits it out
		corrupt func(s *Store, id string)
		want    error
	}{
		{"wrong digest", DefaultFileReadIdle, func(s *Store, id string) {
			info, err := s.files.GetInfo(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			info.Digest = "SHA-256=" + base64.URLEncoding.EncodeToString(make([]byte, 32))
			data, err := json.Marshal(info)
			if err != nil {
				t.Fatal(err)
			}
			m := nats.NewMsg("$O." + filesBucket + ".M." + base64.URLEncoding.EncodeToString([]byte(id)))
			m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
			m.Data = data
			if _, err := s.js.PublishMsg(ctx, m); err != nil {
				t.Fatal(err)
			}
		}, errFileCorrupt},
	} {
		s, _ := newStore(t, func(o *Options) { o.FileReadIdle = tc.idle; o.NoTracker = true })
		id := "file-" + strings.ReplaceAll(tc.name, " ", "")
		putTestFile(t, s, id, content)
		tc.corrupt(s, id)
		rc, err := s.FileContent(ctx, "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if !errors.Is(err, tc.want) || len(got) >= len(content) {
			t.Fatalf("%s: read %d of %d bytes, %v; want a short read and %v", tc.name, len(got), len(content), err, tc.want)
		}
	}
}

// A file missing a chunk (the first, a middle one or the last) is an
// error when it is opened, before any byte and without waiting: before,
// the read waited FileReadIdle (30 s by default) for the chunk, and the
// download's 500 came that late. Here FileReadIdle is an hour: the old
// reader opened and would have waited it out.
func TestFileMissingChunkFailsAtOpen(t *testing.T) {
	ctx := context.Background()
	content := randomContent(t, 300<<10) // 3 chunks
	s, _ := newStore(t, func(o *Options) { o.FileReadIdle = time.Hour; o.NoTracker = true })
	for i := 0; i < 3; i++ {
		id := "file-missing-" + string(rune('a'+i))
		putTestFile(t, s, id, content)
		dropChunk(t, s, id, i)
		rc, err := s.FileContent(ctx, "acme", id)
		if err == nil {
			rc.Close()
			t.Fatalf("chunk %d missing: the file opened; want errFileCorrupt at once", i)
		}
		if !errors.Is(err, errFileCorrupt) || !errors.Is(err, ErrFileUnreadable) {
			t.Fatalf("chunk %d missing: %v; want errFileCorrupt", i, err)
		}
	}
	// Whole, it reads.
	putTestFile(t, s, "file-whole", content)
	rc, err := s.FileContent(ctx, "acme", "file-whole")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("whole file: %d bytes, %v", len(got), err)
	}
}

// dropChunk deletes chunk i (from 0) of the file's current copy.
func dropChunk(t *testing.T, s *Store, id string, i int) {
	t.Helper()
	ctx := context.Background()
	info, err := s.files.GetInfo(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.js.Stream(ctx, filesStream)
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for seq := first.State.FirstSeq; seq <= first.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil || m.Subject != fileChunksSubject(info.NUID) {
			continue
		}
		if n == i {
			if err := st.DeleteMsg(ctx, seq); err != nil {
				t.Fatal(err)
			}
			return
		}
		n++
	}
	t.Fatalf("file %s has no chunk %d", id, i)
}

// Files of every size, empty and one byte past a chunk included, read
// whole and equal.
func TestFileReadSizes(t *testing.T) {
	s, _ := newStore(t, func(o *Options) { o.NoTracker = true })
	for _, n := range []int{0, 1, 128 << 10, 128<<10 + 1, 5<<20 + 3} {
		content := randomContent(t, n)
		putTestFile(t, s, "file-sized", content)
		rc, err := s.FileContent(context.Background(), "acme", "file-sized")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("%d bytes: read %d, %v", n, len(got), err)
		}
	}
}
