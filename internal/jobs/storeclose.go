package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// ErrCloseAbandoned is CloseWithin's error when its context ended before
// NATS let the Store go: the close goes on in the background, and the
// caller may exit without it.
var ErrCloseAbandoned = errors.New("jobs: the store's close was given up: NATS did not answer within the bound")

// CloseWithin closes the Store as Close does, but waits at most until ctx
// ends. NATS can keep a close waiting for good: nats-server looping under
// a stream's lock (a damaged KV block, nats-server v2.15.2) stops reading
// from this connection, the client's writer then blocks holding the
// connection's lock, and every call on it, Drain and Close included, waits
// on that lock; only a kill ended the process (docs/RELIABILITY.md,
// kvwedge). Past ctx it returns ErrCloseAbandoned (wrapping ctx's cause)
// and leaves the close running on its goroutine, which ends if NATS lets
// go, or with the process; a later Close or CloseWithin waits for that
// same close. What the close would have flushed (acks, a webhook's
// pending mark) is then lost as in a crash: delivery is at least once,
// the jobs run again and the webhooks are resent by the next sweep.
func (s *Store) CloseWithin(ctx context.Context) error {
	s.once.Do(func() {
		s.closeDone = make(chan struct{})
		go func() {
			defer close(s.closeDone)
			s.closeErr = s.close()
		}()
	})
	select {
	case <-s.closeDone:
		return s.closeErr
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrCloseAbandoned, context.Cause(ctx))
	}
}

// close stops the Store's goroutines, then drains and closes the NATS
// connection; each step can wait on NATS (CloseWithin bounds them all).
func (s *Store) close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if s.metrics != nil {
		s.o.Registerer.Unregister(s.metrics)
	}
	var err error
	// Drain flushes acks and publishes still buffered; Close would drop them.
	if derr := s.nc.Drain(); derr != nil {
		s.nc.Close()
		if !errors.Is(derr, nats.ErrConnectionClosed) && !errors.Is(derr, nats.ErrConnectionReconnecting) {
			err = fmt.Errorf("jobs: draining NATS connection: %w", derr)
		}
	}
	<-s.ncClosed // Drain is asynchronous; its end bounds our goroutines
	return err
}
