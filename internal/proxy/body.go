package proxy

import (
	"context"
	"errors"
	"io"
	"math/bits"
	"net/http/httptrace"
	"sync"
	"sync/atomic"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// ErrBodyTooLarge is returned by ReadBody when the body exceeds the limit.
var ErrBodyTooLarge = errors.New("request body too large")

// ErrBodyMemory is returned by ReadBody when the bytes held in request
// bodies across all connections are at the pool's budget: the client gets
// 503 and retries later instead of the gateway taking more memory.
var ErrBodyMemory = errors.New("request body memory budget exhausted")

// A body is read into blocks, each about an eighth of what has arrived
// (at least minBodyBuf, at most maxPooledBuf, a power of two so it comes
// from a pool), and assembled into one contiguous buffer only once it is
// complete. So a body waiting for more data holds about the bytes that
// actually arrived (+12.5%, + minBodyBuf) whatever its Content-Length
// announces (a client announcing 8 MiB and sending 64 KiB costs 72 KiB;
// 16 KiB, 20 KiB), and no step copies what arrived into a larger buffer,
// leaving the smaller one as garbage. A complete body of up to
// maxPooledBuf is assembled into a pooled power-of-two buffer; a larger
// one into a buffer of its exact length, left to the garbage collector
// rather than pinned. A body whose announced length is under minBodyBuf
// is read into the smallest pooled block that holds that length (at
// least minSmallBuf): a 90-byte chat request holds 128 bytes for the
// request's life, a held stream included, not 4 KiB. A body read with ReadBodyChunks (an audio form, up
// to 25 MiB, read only by code that takes chunks) is never assembled: the
// copy would hold the body twice at its end (blocks and buffer, 2.1 times
// its length, all of it charged) and leave a buffer of its length to the
// collector.
const (
	minBodyBuf    = 4 << 10
	minSmallBuf   = 128
	maxPooledBuf  = 1 << 20
	bufSizeLevels = 14 // 128 B, 256 B, ... 1 MiB
)

// Body is a pooled request body. The transport may still read an outbound
// body after RoundTrip returns (it closes it "possibly in a separate
// goroutine"), so the buffer goes back to the pool only when the handler and
// every outbound reader are done with it: a reference count, not a defer.
//
// Its bytes count against the pool's budget while an owner holds it (the
// handler, or a coalesced call that Retained it); the transport's late
// reference does not extend that, since a write that never completes would
// otherwise hold budget forever.
type Body struct {
	buf    []byte    // the complete body, unless kept in chunks
	blocks []*[]byte // while reading, or kept (chunked): pooled blocks, each full but the last
	// firstBlock backs blocks for a body of one block (the common case).
	firstBlock [1]*[]byte
	read       int64        // bytes in blocks
	chunked    bool         // ReadBodyChunks: blocks kept, never assembled
	held       *[]byte      // the pooled buffer backing buf, nil when not pooled
	refs       atomic.Int32 // owners plus outbound readers: the buffer's lifetime
	owners     atomic.Int32 // Retain/Release: the budget's lifetime
	pool       *BodyPool
	// size is the body's length, kept past its release (Len): a request
	// whose body went back early (Request.ReleaseBody) still settles its
	// token estimate from it.
	size int64
	// poisoned: released into a poisoning pool (PoisonReleased); any
	// later Bytes or Chunks is a use after release.
	poisoned atomic.Bool
}

// BodyPool recycles request body buffers and bounds, through its budget,
// the bytes all bodies hold at once.
type BodyPool struct {
	sizes  [bufSizeLevels]sync.Pool // *[]byte of cap minSmallBuf<<i
	budget *netguard.Budget
	poison bool // PoisonReleased
}

// PoisonReleased is a test hook: from now on a body's buffers are
// overwritten with poisonByte when its last reference goes, and never
// reused, so a reader that kept a slice of a released body reads garbage
// (not another request's bytes, nor its own), and Bytes or Chunks on it
// panics. Call it before the pool is used.
func (p *BodyPool) PoisonReleased() { p.poison = true }

// poisonByte fills a poisoned body's released buffers: 0xDB is not
// valid UTF-8 on its own, so poisoned JSON never parses.
const poisonByte = 0xDB

// NewBodyPool builds an empty pool whose bodies reserve their buffers from
// budget (nil: unbounded).
func NewBodyPool(budget *netguard.Budget) *BodyPool { return &BodyPool{budget: budget} }

// ReadBody reads r (at most limit bytes, else ErrBodyTooLarge) into a pooled
// Body holding one reference, which the caller must Release. Memory follows
// the bytes received, never contentLength (which only refuses an announced
// oversize early and keeps the last step from overshooting); each step up
// is reserved from the budget first, and ErrBodyMemory refuses the body
// when it does not fit. Read errors are returned as they are.
func (p *BodyPool) ReadBody(r io.Reader, contentLength, limit int64) (*Body, error) {
	return p.read(r, contentLength, limit, false)
}

// ReadBodyChunks is ReadBody for a body read only through Chunks: its
// blocks are kept as they are, never copied into one buffer, so it holds
// its bytes received (+12.5%, + minBodyBuf) from the first byte to
// Release. Bytes is nil for such a body of more than one block.
func (p *BodyPool) ReadBodyChunks(r io.Reader, contentLength, limit int64) (*Body, error) {
	return p.read(r, contentLength, limit, true)
}

// ReadBodyReusing is ReadBody into spare, a Body of this pool whose
// caller's ReleaseLast returned true and that nothing else points to,
// instead of a new one (nil spare: a new one). A cache hit
// reads its body this way: one allocation with pointers (112 bytes, the
// largest of Sluice's own on a hit) fewer per request
// (docs/BENCHMARKS.md §9, branch hitfast).
func (p *BodyPool) ReadBodyReusing(spare *Body, r io.Reader, contentLength, limit int64) (*Body, error) {
	if spare == nil || spare.pool != p {
		return p.read(r, contentLength, limit, false)
	}
	if contentLength > limit {
		return nil, ErrBodyTooLarge
	}
	*spare = Body{} // its size and flags of last time gone
	return p.readInto(spare, r, contentLength, limit, false)
}

func (p *BodyPool) read(r io.Reader, contentLength, limit int64, chunked bool) (*Body, error) {
	if contentLength > limit {
		return nil, ErrBodyTooLarge
	}
	return p.readInto(new(Body), r, contentLength, limit, chunked)
}

// readInto is read into b, a zero Body.
func (p *BodyPool) readInto(b *Body, r io.Reader, contentLength, limit int64, chunked bool) (*Body, error) {
	b.pool, b.chunked = p, chunked
	b.blocks = b.firstBlock[:0] // most bodies fit one block: no slice to allocate
	b.refs.Store(1)
	b.owners.Store(1)
	if err := b.readFrom(r, contentLength, limit); err != nil {
		b.Release()
		return nil, err
	}
	b.size = b.read
	if len(b.blocks) == 0 {
		b.size = int64(len(b.buf))
	}
	return b, nil
}

func (b *Body) readFrom(r io.Reader, contentLength, limit int64) error {
	for {
		room := b.room(limit - b.read)
		if len(room) == 0 {
			if b.read == contentLength || b.read == limit {
				// At the announced length or at the limit: only the end
				// of the body may follow, and a block just to see it
				// would be wasted.
				var probe [1]byte
				got, err := r.Read(probe[:])
				if got == 0 {
					if err == io.EOF {
						return b.assemble()
					}
					if err != nil {
						return b.drop(err)
					}
					continue
				}
				if b.read == limit {
					return b.drop(ErrBodyTooLarge)
				}
				contentLength = -1 // more than announced: no longer a bound
				if err := b.addBlock(-1); err != nil {
					return b.drop(err)
				}
				b.extend(copy(b.room(1), probe[:]))
				if err == io.EOF {
					return b.assemble()
				}
				if err != nil {
					return b.drop(err)
				}
				continue
			}
			if err := b.addBlock(contentLength); err != nil {
				return b.drop(err)
			}
			continue
		}
		n, err := r.Read(room)
		b.extend(n)
		if err == io.EOF {
			return b.assemble()
		}
		if err != nil {
			return b.drop(err)
		}
	}
}

// room is the unused part of the last block, at most max bytes.
func (b *Body) room(max int64) []byte {
	if len(b.blocks) == 0 || max <= 0 {
		return nil
	}
	last := *b.blocks[len(b.blocks)-1]
	room := last[len(last):cap(last)]
	if int64(len(room)) > max {
		room = room[:max]
	}
	return room
}

func (b *Body) extend(n int) {
	last := b.blocks[len(b.blocks)-1]
	*last = (*last)[:len(*last)+n]
	b.read += int64(n)
}

// addBlock reserves and appends a block of about an eighth of what has
// arrived; the first block of a body announced (contentLength) under
// minBodyBuf, the smallest pooled size that holds it.
func (b *Body) addBlock(contentLength int64) error {
	size := minBodyBuf
	if b.read == 0 && contentLength > 0 && contentLength < minBodyBuf {
		size = max(minSmallBuf, 1<<bits.Len64(uint64(contentLength-1)))
	}
	for size < maxPooledBuf && int64(size) <= b.read/16 {
		size *= 2 // the power of two in (read/16, read/8]
	}
	if !b.pool.budget.TryReserve(int64(size)) {
		return ErrBodyMemory
	}
	buf, held := b.pool.get(size)
	*held = buf
	b.blocks = append(b.blocks, held)
	return nil
}

// assemble makes the blocks one contiguous buffer: the only block as it
// is, more of them copied into one buffer reserved first, or left as
// they are for a chunked body.
func (b *Body) assemble() error {
	switch {
	case len(b.blocks) == 0:
		return nil
	case len(b.blocks) == 1:
		b.held = b.blocks[0]
		b.buf, b.blocks = *b.held, nil
		return nil
	case b.chunked:
		return nil
	}
	size := int(b.read)
	if size <= maxPooledBuf {
		size = minBodyBuf << bits.Len(uint((size-1)/minBodyBuf)) // the pooled size that fits
	}
	if !b.pool.budget.TryReserve(int64(size)) {
		return b.drop(ErrBodyMemory)
	}
	buf, held := b.pool.get(size) // beyond the pooled sizes: exact, never pooled
	for _, blk := range b.blocks {
		buf = append(buf, *blk...)
	}
	b.drop(nil)
	b.buf, b.held = buf, held
	return nil
}

// drop gives the blocks back to the pool and their bytes to the budget,
// and returns err.
func (b *Body) drop(err error) error {
	for _, blk := range b.blocks {
		b.pool.budget.Release(int64(cap(*blk)))
		b.pool.put(blk)
	}
	b.blocks, b.read = nil, 0
	return err
}

// get returns an empty buffer of capacity size, pooled when size is one
// of the pooled sizes.
func (p *BodyPool) get(size int) ([]byte, *[]byte) {
	i, ok := sizeLevel(size)
	if !ok {
		return make([]byte, 0, size), nil
	}
	if held, _ := p.sizes[i].Get().(*[]byte); held != nil {
		return (*held)[:0], held
	}
	buf := make([]byte, 0, size)
	return buf, &buf
}

func (p *BodyPool) put(held *[]byte) {
	if held == nil {
		return
	}
	if i, ok := sizeLevel(cap(*held)); ok {
		p.sizes[i].Put(held)
	}
}

// sizeLevel is the pool index of a buffer of capacity size.
func sizeLevel(size int) (int, bool) {
	if size < minSmallBuf || size > maxPooledBuf || size&(size-1) != 0 {
		return 0, false
	}
	return bits.TrailingZeros(uint(size / minSmallBuf)), true
}

// Bytes returns the body; valid until the last reference is released.
// It is nil for a body of ReadBodyChunks kept in more than one block.
func (b *Body) Bytes() []byte {
	if b.poisoned.Load() {
		panic("proxy: request body read after its release")
	}
	return b.buf
}

// Chunks returns the body as a list of byte slices (one, unless the body
// was read by ReadBodyChunks and kept in blocks); valid until the last
// reference is released.
func (b *Body) Chunks() [][]byte {
	if b.poisoned.Load() {
		panic("proxy: request body read after its release")
	}
	if len(b.blocks) == 0 {
		return [][]byte{b.buf}
	}
	out := make([][]byte, len(b.blocks))
	for i, blk := range b.blocks {
		out[i] = *blk
	}
	return out
}

// Len is the body's length in bytes, valid after its release too.
func (b *Body) Len() int64 { return b.size }

// Release drops one owner's reference: the last owner gives the bytes back
// to the budget, the last reference of any kind the buffer to the pool.
func (b *Body) Release() { b.ReleaseLast() }

// ReleaseLast is Release, reporting whether this very call dropped the
// last reference (owners' and outbound readers') and so gave the buffers
// back and cleared the Body: then b is its caller's alone, to give to
// ReadBodyReusing, provided nothing else keeps b itself (a Body read after
// its release, Len, by a holder that outlives the request must not be
// reused). It is false when another holder (a coalesced call, the
// transport's write hook) still holds a reference, or dropped the last one
// itself: that holder's goroutine may still be giving the buffers back
// over b's fields, so b, read into again, would share a buffer between two
// requests. A poisoned body (PoisonReleased) is never reported.
func (b *Body) ReleaseLast() bool {
	if b.owners.Add(-1) == 0 {
		b.pool.budget.Release(b.capacity())
	}
	return b.unref()
}

// capacity is the bytes the body holds, as reserved: its buffer's
// capacity, or its blocks'.
func (b *Body) capacity() int64 {
	n := int64(cap(b.buf))
	for _, blk := range b.blocks {
		n += int64(cap(*blk))
	}
	return n
}

// unref drops one reference; true when it was the last and b is now
// cleared (not poisoned), everything about it done.
func (b *Body) unref() bool {
	if b.refs.Add(-1) == 0 {
		if b.pool.poison {
			b.poison()
			return false
		}
		b.pool.put(b.held)
		for _, blk := range b.blocks {
			b.pool.put(blk)
		}
		// firstBlock too: a Body kept for reuse (ReleaseLast) would pin
		// its first block, back in the pool, for as long as its keeper
		// lives.
		b.buf, b.held, b.blocks, b.firstBlock[0] = nil, nil, nil, nil
		return true
	}
	return false
}

// poison overwrites the released body's buffers with poisonByte and
// keeps them out of the pool (PoisonReleased); its slices stay as they
// are, so a reader that kept one reads the poison.
func (b *Body) poison() {
	fill := func(p []byte) {
		for i := range p {
			p[i] = poisonByte
		}
	}
	fill(b.buf[:cap(b.buf)])
	for _, blk := range b.blocks {
		fill((*blk)[:cap(*blk)])
	}
	b.poisoned.Store(true)
}

// holdUntilWritten takes a reference that is dropped when the transport
// reports the request fully written. If the write fails or never happens,
// the reference is never dropped and the buffer is left to the garbage
// collector instead of the pool: losing a pool entry is safe, reusing a
// buffer the transport might still read is not.
func (b *Body) holdUntilWritten(ctx context.Context) context.Context {
	h := &writeHold{}
	return h.hold(ctx, b)
}

// writeHold is holdUntilWritten's state: the hook and its once in one
// allocation (the upstream request embeds it; outbound.go).
type writeHold struct {
	b     *Body
	once  atomic.Bool
	trace httptrace.ClientTrace
	// readers are the request's readers over the body (its upstream's),
	// emptied once the request is written: the response keeps the request
	// (http.Response.Request) and so them for the whole stream, and a
	// reader still pointing at the body's buffer would keep it reachable
	// after its release (a 64 KiB body held by every held stream that
	// sent one, though back in the pool).
	readers *upstream
}

func (h *writeHold) hold(ctx context.Context, b *Body) context.Context {
	b.refs.Add(1)
	h.b = b
	h.trace.WroteRequest = h.wrote
	return httptrace.WithClientTrace(ctx, &h.trace)
}

func (h *writeHold) wrote(info httptrace.WroteRequestInfo) {
	if info.Err == nil && h.once.CompareAndSwap(false, true) {
		// The transport reports from the goroutine that wrote the body,
		// and reads it no more (no GetBody: our retries build a new
		// request).
		if h.readers != nil {
			h.readers.body.Reset(nil)
			h.readers.segs.Reset(nil)
		}
		h.b.unref()
	}
}

// Retain takes one more owner's reference, for a holder that outlives the
// handler (a coalesced upstream call); it must Release it.
func (b *Body) Retain() {
	b.owners.Add(1)
	b.refs.Add(1)
}
