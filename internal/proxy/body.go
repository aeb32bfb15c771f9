package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
)

// ErrBodyTooLarge is returned by ReadBody when the body exceeds the limit.
var ErrBodyTooLarge = errors.New("request body too large")

// Body is a pooled request body. The transport may still read an outbound
// body after RoundTrip returns (it closes it "possibly in a separate
// goroutine"), so the buffer goes back to the pool only when the handler and
// every outbound reader are done with it: a reference count, not a defer.
type Body struct {
	buf  bytes.Buffer
	refs atomic.Int32
	pool *sync.Pool
}

// BodyPool recycles request bodies.
type BodyPool struct{ pool sync.Pool }

// NewBodyPool builds an empty pool.
func NewBodyPool() *BodyPool {
	p := &BodyPool{}
	p.pool.New = func() any { return &Body{pool: &p.pool} }
	return p
}

// ReadBody reads r (at most limit bytes, else ErrBodyTooLarge) into a pooled
// Body holding one reference, which the caller must Release.
func (p *BodyPool) ReadBody(r io.Reader, contentLength, limit int64) (*Body, error) {
	if contentLength > limit {
		return nil, ErrBodyTooLarge
	}
	b := p.pool.Get().(*Body)
	b.buf.Reset()
	b.refs.Store(1)
	if contentLength > 0 {
		b.buf.Grow(int(contentLength))
	}
	if _, err := b.buf.ReadFrom(io.LimitReader(r, limit+1)); err != nil {
		b.Release()
		return nil, err
	}
	if int64(b.buf.Len()) > limit {
		b.Release()
		return nil, ErrBodyTooLarge
	}
	return b, nil
}

// Bytes returns the body; valid until the last reference is released.
func (b *Body) Bytes() []byte { return b.buf.Bytes() }

// Release drops one reference; the last one returns the buffer to the pool.
func (b *Body) Release() {
	if b.refs.Add(-1) == 0 && b.pool != nil {
		if b.buf.Cap() > 1<<20 {
			return // let big buffers go rather than pinning them in the pool
		}
		b.pool.Put(b)
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
				b.Release()
			}
		},
	})
}

// Retain takes one more reference, for a holder that outlives the handler
// (a coalesced upstream call); it must Release it.
func (b *Body) Retain() { b.refs.Add(1) }
