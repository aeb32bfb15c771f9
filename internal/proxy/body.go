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

// Buffers grow by doubling from minBodyBuf, so a body holds at most about
// twice the bytes that actually arrived (plus minBodyBuf) whatever its
// Content-Length announces: a client announcing 8 MiB and sending 10 bytes
// costs 4 KiB. Sizes up to maxPooledBuf come from per-size pools; larger
// ones are left to the garbage collector rather than pinned.
const (
	minBodyBuf    = 4 << 10
	maxPooledBuf  = 1 << 20
	bufSizeLevels = 9 // 4 KiB, 8 KiB, ... 1 MiB
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
	buf    []byte
	held   *[]byte      // the pooled buffer backing buf, nil when not pooled
	refs   atomic.Int32 // owners plus outbound readers: the buffer's lifetime
	owners atomic.Int32 // Retain/Release: the budget's lifetime
	pool   *BodyPool
}

// BodyPool recycles request body buffers and bounds, through its budget,
// the bytes all bodies hold at once.
type BodyPool struct {
	sizes  [bufSizeLevels]sync.Pool // *[]byte of cap minBodyBuf<<i
	budget *netguard.Budget
}

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
	if contentLength > limit {
		return nil, ErrBodyTooLarge
	}
	b := &Body{pool: p}
	b.refs.Store(1)
	b.owners.Store(1)
	if err := b.readFrom(r, contentLength, limit); err != nil {
		b.Release()
		return nil, err
	}
	return b, nil
}

func (b *Body) readFrom(r io.Reader, contentLength, limit int64) error {
	for {
		if len(b.buf) == cap(b.buf) {
			if n := int64(len(b.buf)); n == contentLength || n == limit {
				// Full at the announced length or at the limit: only the
				// end of the body may follow, and a step up just to see
				// it would double the buffer.
				var probe [1]byte
				got, err := r.Read(probe[:])
				if got == 0 {
					if err == io.EOF {
						return nil
					}
					if err != nil {
						return err
					}
					continue
				}
				if n == limit {
					return ErrBodyTooLarge
				}
				if err := b.grow(-1, limit); err != nil { // more than announced: no longer a bound
					return err
				}
				b.buf = append(b.buf, probe[0])
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				continue
			}
			if err := b.grow(contentLength, limit); err != nil {
				return err
			}
		}
		n, err := r.Read(b.buf[len(b.buf):cap(b.buf)])
		b.buf = b.buf[:len(b.buf)+n]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// grow replaces a full buffer (shorter than limit) with one about twice
// its size, reserving the difference from the budget first. Past the
// pooled sizes a step never goes beyond the announced length.
func (b *Body) grow(contentLength, limit int64) error {
	old := cap(b.buf)
	size := max(2*old, minBodyBuf)
	switch {
	case size > maxPooledBuf:
		if contentLength > int64(old) {
			size = int(min(int64(size), contentLength))
		}
		size = int(min(int64(size), limit))
	case int64(size) > limit:
		size = int(limit) // a limit below the pooled sizes
	}
	if !b.pool.budget.TryReserve(int64(size - old)) {
		return ErrBodyMemory
	}
	next, held := b.pool.get(size)
	next = append(next, b.buf...)
	b.pool.put(b.held)
	b.buf, b.held = next, held
	return nil
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
	if size < minBodyBuf || size > maxPooledBuf || size&(size-1) != 0 {
		return 0, false
	}
	return bits.TrailingZeros(uint(size / minBodyBuf)), true
}

// Bytes returns the body; valid until the last reference is released.
func (b *Body) Bytes() []byte { return b.buf }

// Release drops one owner's reference: the last owner gives the bytes back
// to the budget, the last reference of any kind the buffer to the pool.
func (b *Body) Release() {
	if b.owners.Add(-1) == 0 {
		b.pool.budget.Release(int64(cap(b.buf)))
	}
	b.unref()
}

func (b *Body) unref() {
	if b.refs.Add(-1) == 0 {
		b.pool.put(b.held)
		b.buf, b.held = nil, nil
	}
}

// holdUntilWritten takes a reference that is dropped when the transport
// reports the request fully written. If the write fails or never happens,
// the reference is never dropped and the buffer is left to the garbage
// collector instead of the pool: losing a pool entry is safe, reusing a
// buffer the transport might still read is not.
func (b *Body) holdUntilWritten(ctx context.Context) context.Context {
	b.refs.Add(1)
	var once atomic.Bool
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil && once.CompareAndSwap(false, true) {
				b.unref()
			}
		},
	})
}

// Retain takes one more owner's reference, for a holder that outlives the
// handler (a coalesced upstream call); it must Release it.
func (b *Body) Retain() {
	b.owners.Add(1)
	b.refs.Add(1)
}
