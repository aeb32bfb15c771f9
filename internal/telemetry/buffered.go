package telemetry

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// BufferedWriter batches log writes (nginx's access_log buffer= flush=):
// one write(2) per request costs more than the rest of a cache hit. Lines
// are flushed when the buffer fills, every flushEvery, and on Close; a
// crash loses at most flushEvery of lines. Safe for concurrent use; each
// Write (one slog record) stays whole.
type BufferedWriter struct {
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

// NewBufferedWriter buffers up to size bytes for w and starts the flusher
// goroutine, which Close stops.
func NewBufferedWriter(w io.Writer, size int, flushEvery time.Duration) *BufferedWriter {
	b := &BufferedWriter{w: bufio.NewWriterSize(w, size), stop: make(chan struct{}), done: make(chan struct{})}
	go b.flushLoop(flushEvery)
	return b
}

func (b *BufferedWriter) flushLoop(every time.Duration) {
	defer close(b.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.Flush()
		}
	}
}

// Write implements io.Writer.
func (b *BufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Write(p)
}

// Flush writes out what is buffered.
func (b *BufferedWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Flush()
}

// Close stops the flusher and flushes.
func (b *BufferedWriter) Close() error {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
	return b.Flush()
}

// NewBufferedLogger is a JSON logger at level over a BufferedWriter of
// 64 KiB flushed every flushEvery; warnings and errors are flushed at
// once. level may change while it logs (a config reload sets it). Close
// the returned writer last, to flush.
func NewBufferedLogger(w io.Writer, level slog.Leveler, flushEvery time.Duration) (*slog.Logger, *BufferedWriter) {
	bw := NewBufferedWriter(w, 64<<10, flushEvery)
	h := flushingHandler{Handler: slog.NewJSONHandler(bw, &slog.HandlerOptions{Level: level}), bw: bw}
	return slog.New(h), bw
}

// flushingHandler flushes the buffer after warnings and errors, so they
// are never held back.
type flushingHandler struct {
	slog.Handler
	bw *BufferedWriter
}

func (h flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.bw.Flush()
	}
	return err
}

func (h flushingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return flushingHandler{Handler: h.Handler.WithAttrs(as), bw: h.bw}
}

func (h flushingHandler) WithGroup(name string) slog.Handler {
	return flushingHandler{Handler: h.Handler.WithGroup(name), bw: h.bw}
}
