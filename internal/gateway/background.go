package gateway

import (
	"context"
	"errors"
	"sync"
)

// Background owns the goroutines the gateway runs beyond a request's
// handler: the upstream calls of coalescing flights, which outlive a
// client that leaves while others wait, and stale-while-revalidate
// refreshes, which nobody waits for, and the losers of hedge races
// (proxy.Owner), which may run on past their request. It outlives reloads
// (the flights do); shutdown joins it with Wait after the server has
// stopped taking requests, so no such call is still running when Run
// returns.
type Background struct {
	ctx    context.Context // ends every call when Wait gives up waiting
	cancel context.CancelFunc

	mu   sync.Mutex
	n    int
	idle *sync.Cond // signalled when n drops to 0
}

// ErrBackgroundCut is Wait's answer when its deadline came first and it
// cancelled the calls still running.
var ErrBackgroundCut = errors.New("gateway: background calls cancelled at shutdown")

// NewBackground returns an empty set of background calls.
func NewBackground() *Background {
	b := &Background{}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.idle = sync.NewCond(&b.mu)
	return b
}

// start counts one call in and returns a context that ends with ctx or
// when Wait gives up, and the func the call must run when it ends.
func (b *Background) start(ctx context.Context) (context.Context, func()) {
	b.mu.Lock()
	b.n++
	b.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
		b.mu.Lock()
		if b.n--; b.n == 0 {
			b.idle.Broadcast()
		}
		b.mu.Unlock()
	}
}

// Go runs fn on a goroutine counted in b (proxy.Owner): a hedge race's
// loser, which may run on past its request to its own first-token bound.
// fn's context ends when Wait gives up waiting.
func (b *Background) Go(fn func(stop context.Context)) {
	ctx, end := b.start(context.Background())
	go func() {
		defer end()
		fn(ctx)
	}()
}

// Wait blocks until every background call has ended. When ctx ends first
// it cancels the calls still running (their upstream requests with them),
// waits for them to return and reports ErrBackgroundCut.
func (b *Background) Wait(ctx context.Context) error {
	stop := context.AfterFunc(ctx, b.cancel)
	b.mu.Lock()
	for b.n > 0 {
		b.idle.Wait()
	}
	b.mu.Unlock()
	if !stop() {
		return ErrBackgroundCut
	}
	return nil
}
