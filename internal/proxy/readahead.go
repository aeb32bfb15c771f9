package proxy

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// Read-ahead (nginx proxy_buffering, bounded): the relay writes a
// response into pooled blocks and a drain goroutine copies them to the
// client, so the relay reads the backend at the backend's pace, not the
// client's. When the backend has finished, the relay ends the call (the
// backend's slot, its adaptive limit's sample, its outstanding work, the
// admission ticket and the usage are settled) while the client keeps
// reading what is held, each write still under server.send_timeout.
//
// A client that keeps up loses nothing: a write is handed to the drain at
// once and a Flush (one per SSE event) flushes as soon as the bytes before
// it are written, so buffering only absorbs lag. Bounds: a response holds
// at most its cap (server.response_readahead) and all responses together
// at most the budget (server.max_readahead_memory). A response that would
// go past either falls back to back-pressure: the relay waits for the
// client to make room (so the backend keeps its slot, as without
// read-ahead), and a response that holds nothing when the budget is full
// is written straight to the client.
//
// Blocks come from the request-body pool (BodyPool): only the drain reads
// a block and it gives the block back once written, so blocks can be
// recycled here, unlike a coalescing flight's (gateway/flightbuf.go),
// whose slices are still being written by many readers when dropped.

// readaheadBlock is the block size: a few SSE events of a fast reader fit
// in one, and the one block a fast reader keeps is small.
const readaheadBlock = 16 << 10

// MinReadahead is the smallest per-response cap that buffers anything.
const MinReadahead = readaheadBlock

// directFirst is how much of an answer goes straight to the client before
// read-ahead starts: the connection's socket buffers hold that much for a
// client that reads at all, so most answers (chat completions are a few
// KiB) cost no drain goroutine and no copy; only a longer answer, which a
// slow client could make the backend wait on, is read ahead.
const directFirst = 64 << 10

// Reasons a response fell back to back-pressure (ReadaheadMetrics).
const (
	FallbackResponseCap = "response_cap" // the response's cap is full
	FallbackMemory      = "memory"       // the global budget is full
)

// Readahead hands out read-ahead writers; it outlives config reloads.
type Readahead struct {
	blocks  *BodyPool
	budget  *netguard.Budget
	metrics *ReadaheadMetrics
}

// NewReadahead takes blocks from pool and reserves them from budget (nil:
// unbounded); m may be nil.
func NewReadahead(pool *BodyPool, budget *netguard.Budget, m *ReadaheadMetrics) *Readahead {
	return &Readahead{blocks: pool, budget: budget, metrics: m}
}

// Writer wraps w; it passes everything straight through until Arm.
func (r *Readahead) Writer(w http.ResponseWriter) *ReadaheadWriter {
	a := &ReadaheadWriter{w: w, ra: r}
	a.flusher, _ = w.(http.Flusher)
	a.cond.L = &a.mu
	return a
}

// ReadaheadWriter is one response's read-ahead. One goroutine writes to
// it (the relay); its drain goroutine, started by the first write once
// armed, is the only user of the client's writer until Finish returns.
type ReadaheadWriter struct {
	w       http.ResponseWriter
	flusher http.Flusher
	ra      *Readahead
	limit   int         // the response's cap; 0: not armed, pass through
	header  http.Header // w.Header(), taken at Arm (see Header)

	mu     sync.Mutex
	cond   sync.Cond // data, flush or close for the drain; room or failure for the writer
	blocks []*[]byte // held bytes: (*blocks[0])[off:], then the later blocks
	off    int
	queued int   // bytes held, not yet written to the client
	held   int   // bytes reserved: the blocks' capacity
	taken  int64 // bytes accepted from the relay
	sent   int64 // bytes written to the client
	// flushAt is taken at the last Flush; the drain flushes once sent
	// reaches it.
	flushAt  int64
	flushDue bool
	busy     bool  // the drain is using w outside mu
	err      error // the client's write failed: the rest is dropped
	closed   bool
	started  bool
	fellBack bool
	done     chan struct{} // made when the drain starts, closed when it ends
	// finished: Finish has returned. Only the handler's goroutine, which
	// calls Finish, reads or sets it, so it needs no lock.
	finished bool
	wmu      sync.Mutex // serialises the drain's and a direct write's use of w
}

// Arm turns read-ahead on for this response, holding up to limit bytes
// (below MinReadahead: off). Call it before anything is written.
func (a *ReadaheadWriter) Arm(limit int) {
	if limit < MinReadahead || a.ra == nil {
		return
	}
	// Taken once, here, on the handler's goroutine: net/http snapshots the
	// header map when the status is written, so the handler may keep using
	// this map while the drain writes, but must not call w.Header() then.
	a.header = a.w.Header()
	a.limit = limit
}

// Unwrap lets http.ResponseController reach the connection.
func (a *ReadaheadWriter) Unwrap() http.ResponseWriter { return a.w }

// Header returns the response's header map.
func (a *ReadaheadWriter) Header() http.Header {
	if a.header != nil {
		return a.header
	}
	return a.w.Header()
}

// WriteHeader sends the status; the relay calls it before any body byte.
func (a *ReadaheadWriter) WriteHeader(code int) {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	a.w.WriteHeader(code)
}

// Write takes p for the client: into the read-ahead while it has room,
// else (fallback) once the client has made room. It fails with the
// client's write error once a write to the client failed.
func (a *ReadaheadWriter) Write(p []byte) (int, error) {
	if a.limit == 0 {
		return a.w.Write(p)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.started && a.taken+int64(len(p)) <= directFirst {
		return a.direct(p) // the drain is not running: in order
	}
	n := 0
	for len(p) > 0 {
		if a.err != nil {
			return n, a.err
		}
		if room := a.room(); len(room) > 0 {
			c := copy(room, p)
			last := a.blocks[len(a.blocks)-1]
			*last = (*last)[:len(*last)+c]
			p, n = p[c:], n+c
			a.queued += c
			a.taken += int64(c)
			a.wake()
			continue
		}
		if reason := a.grow(); reason == "" {
			continue
		} else if !a.fellBack {
			a.fellBack = true
			a.ra.metrics.fellBack(reason)
		}
		if a.queued == 0 && !a.busy {
			// Nothing held to wait on (the budget is full): write
			// straight to the client, as without read-ahead.
			m, err := a.direct(p)
			return n + m, err
		}
		a.cond.Wait() // back-pressure: the drain frees a block
	}
	return n, nil
}

// direct writes p to the client on the caller's goroutine; mu is held
// on entry and exit, and nothing is queued, so the drain stays idle.
func (a *ReadaheadWriter) direct(p []byte) (int, error) {
	a.mu.Unlock()
	a.wmu.Lock()
	n, err := a.w.Write(p)
	a.wmu.Unlock()
	a.mu.Lock()
	a.taken += int64(n)
	a.sent += int64(n)
	if err != nil && a.err == nil {
		a.err = err
		a.cond.Broadcast()
	}
	return n, err
}

// room is the free end of the last block.
func (a *ReadaheadWriter) room() []byte {
	if len(a.blocks) == 0 {
		return nil
	}
	last := *a.blocks[len(a.blocks)-1]
	return last[len(last):cap(last)]
}

// grow adds a block within the response's cap and the global budget, or
// says which of them is full.
func (a *ReadaheadWriter) grow() (full string) {
	if a.held+readaheadBlock > a.limit {
		return FallbackResponseCap
	}
	if !a.ra.budget.TryReserve(readaheadBlock) {
		return FallbackMemory
	}
	buf, blk := a.ra.blocks.get(readaheadBlock)
	*blk = buf
	a.blocks = append(a.blocks, blk)
	a.held += readaheadBlock
	return ""
}

// Flush asks for everything written so far to be flushed to the client
// as soon as it is written.
func (a *ReadaheadWriter) Flush() {
	if a.limit == 0 {
		if a.flusher != nil {
			a.flusher.Flush()
		}
		return
	}
	a.mu.Lock()
	if !a.started { // everything so far went straight to the client
		a.mu.Unlock()
		if a.flusher != nil {
			a.wmu.Lock()
			a.flusher.Flush()
			a.wmu.Unlock()
		}
		return
	}
	a.flushAt, a.flushDue = a.taken, true
	a.wake()
	a.mu.Unlock()
}

// wake tells the drain there is work, starting it the first time; mu held.
func (a *ReadaheadWriter) wake() {
	if !a.started {
		a.started = true
		a.done = make(chan struct{})
		go a.drain()
	}
	a.cond.Broadcast()
}

// drain copies held bytes to the client, block by block, flushing where
// asked. It ends when the response is finished and everything is written,
// or when a write to the client fails (send_timeout, a client gone).
func (a *ReadaheadWriter) drain() {
	defer close(a.done)
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.err == nil {
		switch {
		case a.queued > 0:
			seg := (*a.blocks[0])[a.off:]
			a.busy = true
			a.mu.Unlock()
			a.wmu.Lock()
			n, err := a.w.Write(seg)
			a.wmu.Unlock()
			a.mu.Lock()
			a.busy = false
			a.consume(n)
			if err != nil {
				a.fail(err)
			}
			a.cond.Broadcast()
		case a.flushDue && a.sent >= a.flushAt:
			a.flushDue = false
			a.busy = true
			a.mu.Unlock()
			a.wmu.Lock()
			if a.flusher != nil {
				a.flusher.Flush()
			}
			a.wmu.Unlock()
			a.mu.Lock()
			a.busy = false
			a.cond.Broadcast()
		case a.closed:
			return
		default:
			a.cond.Wait()
		}
	}
}

// consume accounts n bytes written from the front block: a block written
// whole goes back to the pool, except the last, which is reused.
func (a *ReadaheadWriter) consume(n int) {
	a.off += n
	a.queued -= n
	a.sent += int64(n)
	front := a.blocks[0]
	if a.off < len(*front) {
		return
	}
	if len(a.blocks) == 1 {
		*front, a.off = (*front)[:0], 0
		return
	}
	a.release(front)
	a.blocks[0] = nil
	a.blocks = a.blocks[1:]
	a.off = 0
}

func (a *ReadaheadWriter) release(blk *[]byte) {
	a.ra.budget.Release(int64(cap(*blk)))
	a.held -= cap(*blk)
	a.ra.blocks.put(blk)
}

// fail drops what is held after a failed write to the client; mu held.
func (a *ReadaheadWriter) fail(err error) {
	a.err = err
	a.dropAll()
}

func (a *ReadaheadWriter) dropAll() {
	for _, blk := range a.blocks {
		a.release(blk)
	}
	a.blocks, a.off, a.queued = nil, 0, 0
}

// Finish waits until the client has the whole response (or its writes
// failed) and frees the blocks. The handler calls it before returning;
// the backend and every slot are released by then, so a client more than
// a block behind here is counted as detached early (one that keeps up is
// at most writing the last events). The gateway calls it twice, when it
// records the request and when it recycles the exchange: a call after
// the first returns at once, the drain ended and the blocks freed (it
// took the lock twice and waited on the closed done for nothing).
func (a *ReadaheadWriter) Finish() {
	if a.limit == 0 || a.finished {
		return
	}
	a.mu.Lock()
	if a.queued > readaheadBlock {
		a.ra.metrics.detachedEarly()
	}
	a.closed = true
	a.cond.Broadcast()
	started := a.started
	a.mu.Unlock()
	if started {
		<-a.done
	}
	a.mu.Lock()
	a.dropAll()
	a.mu.Unlock()
	a.finished = true
}

// ReadaheadMetrics count what read-ahead does. A nil *ReadaheadMetrics
// counts nothing.
type ReadaheadMetrics struct {
	detached  prometheus.Counter
	fallbacks *prometheus.CounterVec
}

// NewReadaheadMetrics registers the read-ahead metrics on reg; the
// bytes-held gauge reads budget at scrape time.
func NewReadaheadMetrics(reg prometheus.Registerer, budget *netguard.Budget) *ReadaheadMetrics {
	m := &ReadaheadMetrics{
		detached: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_readahead_detached_total",
			Help: "Responses whose backend was released while their client was more than a read-ahead block (16 KiB) behind.",
		}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_readahead_fallbacks_total",
			Help: "Responses that outgrew read-ahead and fell back to back-pressure (the backend kept its slot): response_cap (server.response_readahead) or memory (server.max_readahead_memory).",
		}, []string{"reason"}),
	}
	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_readahead_bytes",
		Help: "Bytes reserved for response read-ahead across all responses (bounded by server.max_readahead_memory).",
	}, func() float64 { return float64(budget.Held()) })
	reg.MustRegister(m.detached, m.fallbacks, held)
	for _, r := range []string{FallbackResponseCap, FallbackMemory} {
		m.fallbacks.WithLabelValues(r)
	}
	return m
}

func (m *ReadaheadMetrics) fellBack(reason string) {
	if m != nil {
		m.fallbacks.WithLabelValues(reason).Inc()
	}
}

func (m *ReadaheadMetrics) detachedEarly() {
	if m != nil {
		m.detached.Inc()
	}
}
