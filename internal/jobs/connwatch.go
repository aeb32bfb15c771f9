package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// errConnLost ends the calls that were waiting on JetStream when the NATS
// connection dropped (connEpoch): ErrUnavailable, so a client gets the
// 503 with Retry-After it would have got a moment later.
var errConnLost = fmt.Errorf("%w: the NATS connection dropped while the call waited", ErrUnavailable)

// connEpoch is a context that lives as long as the NATS connection as it
// is now, and ends (cause errConnLost) when it drops. nats.go keeps a
// request that is waiting for its reply (a publish's ack, a key-value
// read or write, a listing's consumer) waiting across a disconnect and
// the reconnects after it, until the request's own deadline: with
// queue.request_timeout at 10 minutes, a GET of a job in flight when
// NATS went away answered after 10 minutes. Calls bound to the epoch
// (Store.onConn) end at the disconnect instead. nats.go's handlers drive
// it: DisconnectErrHandler ends the epoch, ReconnectHandler starts the
// next. Both run on nats.go's one callback goroutine, in the order of
// the events, so a late disconnect never ends the epoch after it.
type connEpoch struct {
	mu  sync.Mutex
	ctx context.Context
	end context.CancelCauseFunc
}

func newConnEpoch() *connEpoch {
	c := &connEpoch{}
	c.ctx, c.end = context.WithCancelCause(context.Background())
	return c
}

// current is the epoch's context: ended once the connection dropped,
// until the reconnect starts a new one.
func (c *connEpoch) current() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ctx
}

// lost ends the epoch: every call bound to it fails with errConnLost.
func (c *connEpoch) lost() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.end(errConnLost)
}

// back starts a new epoch after a reconnect.
func (c *connEpoch) back() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		c.ctx, c.end = context.WithCancelCause(context.Background())
	}
}

// onConn admits a request-path call (refused at once while the Store is
// closed or NATS is away, checkOpen) and binds ctx to the connection: the
// returned context also ends when the connection drops. done must be
// called with the call's error when it ends; it releases the binding and
// returns the error to hand on: errConnLost (wrapping ErrUnavailable)
// when the drop ended the call, err otherwise.
func (s *Store) onConn(ctx context.Context) (context.Context, func(error) error, error) {
	if err := s.checkOpen(); err != nil {
		return ctx, nil, err
	}
	epoch := s.conn.current()
	if epoch.Err() != nil {
		// Connected again, the reconnect's handler not yet run: a moment.
		return ctx, nil, context.Cause(epoch)
	}
	bound, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(epoch, func() { cancel(context.Cause(epoch)) })
	done := func(err error) error {
		stop()
		lost := err != nil && ctx.Err() == nil && errors.Is(context.Cause(bound), errConnLost)
		cancel(nil)
		if lost && !errors.Is(err, ErrUnavailable) {
			// The call's own error is the cancellation's echo
			// (context canceled), which would read as a client gone.
			return fmt.Errorf("%w (%v)", errConnLost, err)
		}
		return err
	}
	return bound, done, nil
}

// cleanupContext bounds a best-effort cleanup a request makes after its
// call failed (dropping what a refused submit stored, releasing a claim,
// failing a batch): RequestTimeout, not the client's context (the
// cleanup must happen even if the client left), and the connection: a
// cleanup the drop made impossible fails at once (its caller logs it; the
// tracker and the idempotency wait cover what it leaves) rather than
// holding the client's answer for RequestTimeout.
func (s *Store) cleanupContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), s.o.RequestTimeout)
	epoch := s.conn.current()
	stop := context.AfterFunc(epoch, cancel)
	return ctx, func() { stop(); cancel() }
}

// boundReader is a file's content whose connection binding (onConn) is
// released when the reader is closed, as the read lasts past FileContent.
type boundReader struct {
	io.ReadCloser
	done func(error) error
}

func (r *boundReader) Close() error {
	err := r.ReadCloser.Close()
	r.done(nil)
	return err
}

// reconnectWait is nats.go's wait between reconnect attempts: short, so
// the Store is back soon after NATS is.
const reconnectWait = 250 * time.Millisecond
