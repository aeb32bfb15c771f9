package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Log buffer bounds. batchBytes is nginx's access_log buffer=: the pending
// size at which the writer goroutine is woken before its tick. pendingLimit
// bounds what waits while the output is blocked: past it lines are dropped
// whole, never a request.
const (
	batchBytes   = 64 << 10
	pendingLimit = 4 << 20
	// closeWait bounds Close's final write: a log pipe nobody reads must
	// not hold the process at exit forever.
	closeWait = 5 * time.Second
	// noticeWait bounds CloseNoting's one line about a Close that gave up.
	noticeWait = time.Second
)

// BufferedWriter batches log writes (nginx's access_log buffer= flush=):
// one write(2) per request costs more than the rest of a cache hit. Write
// never does I/O and never waits on it: it appends the line to a pending
// buffer under a short lock, and one writer goroutine swaps that buffer out
// and writes it outside the lock, every flushEvery, when pending passes
// 64 KiB, and when Flush asks (warnings and errors). If the output blocks
// (a full log pipe, a paused `| less`), requests keep being answered:
// pending grows to its bound (4 MiB), then lines are dropped whole and
// counted, and once the output takes writes again one line says how many
// were lost. A crash loses at most flushEvery of lines. Safe for concurrent
// use; each Write (one slog record) stays whole.
type BufferedWriter struct {
	out       io.Writer
	batch     int // pending bytes that wake the writer
	limit     int // pending bytes past which lines are dropped
	closeWait time.Duration
	// noticeWait bounds CloseNoting's line.
	noticeWait time.Duration
	now        func() time.Time
	tick       <-chan time.Time

	mu      sync.Mutex
	pending []byte
	dropped int64 // lines dropped since the last notice; guarded by mu

	spare        []byte // the writer goroutine's buffer, swapped with pending
	spareCap     atomic.Int64
	writing      atomic.Int64
	droppedTotal atomic.Int64
	kick         chan struct{} // cap 1: a wake-up that never blocks Write
	stop         chan struct{}
	stopOnce     sync.Once
	done         chan struct{}
}

// writerConfig is what NewBufferedWriter fixes and tests choose.
type writerConfig struct {
	batch, limit int
	closeWait    time.Duration
	noticeWait   time.Duration // 0: noticeWait
	now          func() time.Time
	tick         <-chan time.Time // nil: a ticker of flushEvery
}

// NewBufferedWriter buffers lines for w, waking its writer when size bytes
// are pending and every flushEvery; lines past 4 MiB pending are dropped.
// It starts the writer goroutine, which Close stops.
func NewBufferedWriter(w io.Writer, size int, flushEvery time.Duration) *BufferedWriter {
	t := time.NewTicker(flushEvery)
	b := newBufferedWriter(w, writerConfig{batch: size, limit: max(pendingLimit, size),
		closeWait: closeWait, noticeWait: noticeWait, now: time.Now, tick: t.C})
	go func() { <-b.done; t.Stop() }()
	return b
}

func newBufferedWriter(w io.Writer, c writerConfig) *BufferedWriter {
	b := &BufferedWriter{out: w, batch: c.batch, limit: c.limit, closeWait: c.closeWait, noticeWait: c.noticeWait,
		now: c.now, tick: c.tick, pending: make([]byte, 0, c.batch), spare: make([]byte, 0, c.batch),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if b.noticeWait <= 0 {
		b.noticeWait = noticeWait
	}
	b.spareCap.Store(int64(c.batch))
	go b.writeLoop()
	return b
}

// Write implements io.Writer. It never blocks on the output: a line that
// does not fit under the bound is dropped whole and counted, and reported
// as written (slog has nothing better to do with an error).
func (b *BufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	if len(b.pending)+len(p) > b.limit {
		b.dropped++
		b.mu.Unlock()
		b.droppedTotal.Add(1)
		return len(p), nil
	}
	b.pending = append(b.pending, p...)
	full := len(b.pending) >= b.batch
	b.mu.Unlock()
	if full {
		b.Flush()
	}
	return len(p), nil
}

// Flush asks the writer goroutine to write out what is pending, at once
// rather than on its tick. It does not wait for the write.
func (b *BufferedWriter) Flush() {
	select {
	case b.kick <- struct{}{}:
	default: // a wake-up is already due
	}
}

func (b *BufferedWriter) writeLoop() {
	defer close(b.done)
	for {
		select {
		case <-b.stop:
			b.writeOut()
			return
		case <-b.tick:
		case <-b.kick:
		}
		b.writeOut()
	}
}

// writeOut swaps the pending buffer out and writes it, with a line for any
// lines dropped since the last one: at the end, where the gap is (what was
// dropped came after what was kept). Only the writer goroutine calls it.
// A buffer that grew past twice the batch (a burst, or an output blocked
// until 4 MiB were pending) is released once written, so a burst's memory
// is not kept for the life of the process; one that grew a line past the
// batch, as a busy log's does every batch, is kept rather than allocated
// again each time.
func (b *BufferedWriter) writeOut() {
	b.mu.Lock()
	buf := b.pending
	b.pending = b.spare[:0]
	dropped := b.dropped
	b.dropped = 0
	b.mu.Unlock()
	if dropped > 0 {
		buf = b.appendDropNotice(buf, dropped)
	}
	if len(buf) > 0 {
		b.writing.Store(int64(len(buf)))
		b.out.Write(buf) // nowhere to report a failed log write
		b.writing.Store(0)
	}
	if cap(buf) > b.keepCap() {
		buf = make([]byte, 0, b.batch)
	}
	b.spare = buf[:0]
	b.spareCap.Store(int64(cap(buf)))
}

// keepCap is the largest buffer capacity kept once written.
func (b *BufferedWriter) keepCap() int { return 2 * b.batch }

// appendDropNotice appends a JSON line shaped like slog's.
func (b *BufferedWriter) appendDropNotice(buf []byte, n int64) []byte {
	buf = append(buf, `{"time":"`...)
	buf = b.now().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","level":"WARN","msg":"log output blocked: lines dropped","dropped":`...)
	buf = strconv.AppendInt(buf, n, 10)
	return append(buf, "}\n"...)
}

// Dropped is how many lines were dropped because the output was blocked.
func (b *BufferedWriter) Dropped() int64 { return b.droppedTotal.Load() }

// Buffered is the bytes pending or being written.
func (b *BufferedWriter) Buffered() int64 {
	b.mu.Lock()
	n := len(b.pending)
	b.mu.Unlock()
	return int64(n) + b.writing.Load()
}

// Capacity is the bytes the writer's two buffers hold allocated: twice
// the batch at rest, up to the pending bound plus a batch during a burst.
func (b *BufferedWriter) Capacity() int64 {
	b.mu.Lock()
	n := cap(b.pending)
	b.mu.Unlock()
	return int64(n) + b.spareCap.Load()
}

// errCloseBlocked is Close giving up on an output that takes no writes.
var errCloseBlocked = errors.New("log output blocked")

// Close stops the writer goroutine after it writes out what is pending. It
// waits at most 5 s: if the output is still blocked it returns an error
// and leaves that write to finish (or not) on its own.
func (b *BufferedWriter) Close() error {
	b.stopOnce.Do(func() { close(b.stop) })
	t := time.NewTimer(b.closeWait)
	defer t.Stop()
	select {
	case <-b.done:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: gave up after %s with %d bytes unwritten (%d lines dropped before)",
			errCloseBlocked, b.closeWait, b.Buffered(), b.Dropped())
	}
}

// CloseNoting is Close, and when Close gives up, one line saying so
// written to w (the process's stderr: the log output itself, its one
// channel left), "sluice: " and Close's error. The write is waited for at
// most a second: on an output still blocked it is left pending, and is
// seen if the output takes writes before the process exits.
func (b *BufferedWriter) CloseNoting(w io.Writer) error {
	err := b.Close()
	if err == nil {
		return nil
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		io.WriteString(w, "sluice: "+err.Error()+"\n")
	}()
	t := time.NewTimer(b.noticeWait)
	defer t.Stop()
	select {
	case <-written:
	case <-t.C:
	}
	return err
}

// Collector is the writer's metrics, read at scrape time: the logger is
// made before the registry.
func (b *BufferedWriter) Collector() prometheus.Collector {
	return collectors{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_log_lines_dropped_total",
			Help: "Log lines dropped whole because the log output (stderr) took no writes and 4 MiB were pending."},
			func() float64 { return float64(b.Dropped()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_log_buffered_bytes",
			Help: "Log bytes pending or being written to the log output."},
			func() float64 { return float64(b.Buffered()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_log_buffer_capacity_bytes",
			Help: "Bytes allocated to the log buffers: twice the 64 KiB batch at rest, more during a burst, released once written."},
			func() float64 { return float64(b.Capacity()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_log_buffered_bytes_limit",
			Help: "Log bytes that may be pending before lines are dropped."},
			func() float64 { return float64(b.limit) }),
	}
}

// collectors is several collectors registered as one.
type collectors []prometheus.Collector

func (cs collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

func (cs collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}

// NewBufferedLogger is a JSON logger at level over a BufferedWriter of
// 64 KiB batches written every flushEvery; warnings and errors are written
// at once. level may change while it logs (a config reload sets it). Close
// the returned writer last, to flush.
func NewBufferedLogger(w io.Writer, level slog.Leveler, flushEvery time.Duration) (*slog.Logger, *BufferedWriter) {
	bw := NewBufferedWriter(w, batchBytes, flushEvery)
	return newFlushingLogger(bw, level), bw
}

func newFlushingLogger(bw *BufferedWriter, level slog.Leveler) *slog.Logger {
	if level == nil {
		level = slog.LevelInfo // slog.HandlerOptions' default
	}
	h := flushingHandler{Handler: slog.NewJSONHandler(bw, &slog.HandlerOptions{Level: level}), bw: bw, level: level}
	return slog.New(h)
}

// flushingHandler wakes the writer after warnings and errors, so they are
// not held back for the tick (without waiting for the write).
type flushingHandler struct {
	slog.Handler
	bw    *BufferedWriter
	level slog.Leveler // the JSON handler's
}

// Enabled is the JSON handler's test, made here: the gateway asks it on
// every request (its access line), and going through the JSON handler
// cost a call and its code lines more (docs/BENCHMARKS.md §9).
func (h flushingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.bw.Flush()
	}
	return err
}

func (h flushingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return flushingHandler{Handler: h.Handler.WithAttrs(as), bw: h.bw, level: h.level}
}

func (h flushingHandler) WithGroup(name string) slog.Handler {
	return flushingHandler{Handler: h.Handler.WithGroup(name), bw: h.bw, level: h.level}
}
