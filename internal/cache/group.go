package cache

import (
	"context"
	"fmt"
	"sync"
)

// Group coalesces identical requests in flight: the first caller for a key
// (the leader) runs fn once; callers arriving before it finishes (the
// followers) wait for and share its result. The zero value is ready to use.
//
// fn runs on its own goroutine with a context that keeps the leader's
// values but not its cancellation: it is cancelled only when every waiter
// (leader included) has given up, so a client that disconnects never
// cancels an upstream request others still wait for. Streaming followers
// get the answer when it is complete, not as it arrives.
type Group struct {
	Metrics *Metrics // optional: counts coalesced followers

	mu    sync.Mutex
	calls map[string]*call
}

type call struct {
	done    chan struct{}
	e       *Entry
	err     error
	waiters int
	cancel  context.CancelFunc
}

// Do returns fn's result for key, running fn only if no call for key is in
// flight. shared is true for followers. If ctx ends first Do returns
// ctx.Err() at once; the call goes on for the other waiters.
func (g *Group) Do(ctx context.Context, key string, fn func(ctx context.Context) (*Entry, error)) (e *Entry, shared bool, err error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[string]*call{}
	}
	c, shared := g.calls[key]
	if shared {
		c.waiters++
		g.mu.Unlock()
		g.Metrics.coalesce()
	} else {
		upCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &call{done: make(chan struct{}), waiters: 1, cancel: cancel}
		g.calls[key] = c
		g.mu.Unlock()
		go g.run(upCtx, key, c, fn)
	}

	select {
	case <-c.done:
		return c.e, shared, c.err
	case <-ctx.Done():
		g.mu.Lock()
		c.waiters--
		if c.waiters == 0 {
			c.cancel()
			if g.calls[key] == c {
				delete(g.calls, key) // a newcomer must not join a cancelled call
			}
		}
		g.mu.Unlock()
		return nil, shared, ctx.Err()
	}
}

func (g *Group) run(ctx context.Context, key string, c *call, fn func(context.Context) (*Entry, error)) {
	defer func() {
		if r := recover(); r != nil {
			c.e, c.err = nil, fmt.Errorf("cache: coalesced call panicked: %v", r)
		}
		g.mu.Lock()
		if g.calls[key] == c {
			delete(g.calls, key)
		}
		g.mu.Unlock()
		c.cancel()
		close(c.done)
	}()
	c.e, c.err = fn(ctx)
}
