package health

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// A probe that runs out of its timeout says the backend did not answer in
// time, unless the gateway itself was not running: a process starved of
// CPU (a container's CPU quota, a loaded machine), stopped (SIGSTOP, a
// debugger) or paused (a VM's live migration) misses the deadline of every
// probe it has out, and when it runs again the deadline fires late, after
// the backends' answers may have been waiting in its sockets. Counted as
// failures, such probes took every backend of a pool out at once and every
// client got 503 no_healthy_backend with nothing wrong upstream (fails: 2
// only needs two such rounds in a row: a gateway that stutters).
//
// So a timed-out probe whose end came later than its deadline by more than
// stallBound (250 ms), on the monotonic clock, is counted neither as a
// pass nor as a failure: the backend keeps its state and its run of
// results, and the next round decides. The gateway's lateness is the evidence, as in
// Hadoop's JvmPauseMonitor ("pause in JVM or host machine") and the
// forecast's own pause rule (RELIABILITY, branch smallleft4). What a probe
// is answered (refused, reset, a non-2xx status) is counted as before,
// stall or not: a dead backend beside healthy ones is still taken out.

// stallBound is how late past its deadline a timed-out probe must end to
// be the gateway's stall. A running Go process's timers fire within
// milliseconds of their time, tens on a loaded machine; a quarter second
// late, the process was not running. The lateness is only the part of the
// stall after the deadline (a 2.5 s stop 50 ms into a 2 s probe ends it
// 0.55 s late, with the backend's answer unread in the socket all along),
// so the bound is not scaled up with the timeout: a stall wrongly
// suspected costs a hung backend one more interval in the pool (its
// requests still fail over on their errors and the passive checks), a
// stall missed costs the pool.
const stallBound = 250 * time.Millisecond

// maxDiscounted is how many timed-out probes of one backend in a row may
// be passed over as the gateway's stall; the next one counts. A stall is an
// episode: a gateway late past stallBound at every probe round after round
// is not pausing but slow, and discounting without end kept a hung backend
// (it accepts and never answers) in the pool for good, its probes' timeouts
// as late as the gateway. With three, a hung backend is out after
// 2*(3+1) rounds at fails 2 when every probe is late, and a gateway keeps
// its pool through up to 7 rounds in a row of stalls across the deadline.
const maxDiscounted = 3

// discount reports whether a stalled probe of b may go uncounted, and if
// so counts it against b's run of discounted probes.
func (c *Checker) discount(b *endpoint.Backend) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tallies[b]
	if !ok {
		return true // dropped by a concurrent round: nothing to count into
	}
	if t.discounted >= maxDiscounted {
		return false
	}
	t.discounted++
	return true
}

// stalled reports whether a probe that started at start and ended now
// with err timed out because the gateway was stalled, and how late past
// its deadline it ended.
func (c *Checker) stalled(start time.Time, err error) (late time.Duration, ok bool) {
	var te *timeoutError
	if !errors.As(err, &te) {
		return 0, false
	}
	late = c.cfg.Now().Sub(start) - c.cfg.Timeout
	return late, late > stallBound
}

// timeoutError is a probe failure that came after the probe's own deadline
// had passed: the failure may be the deadline's doing.
type timeoutError struct{ err error }

func (e *timeoutError) Error() string { return e.err.Error() }
func (e *timeoutError) Unwrap() error { return e.err }

// timedOut marks err as a timeout when it is one and ctx, the probe's own
// context, ran out of time (the caller's cancellation is Canceled, not
// this). An answer that came back after the deadline (a refused
// connection, a reset) stays what it is.
func timedOut(ctx context.Context, err error) error {
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return err
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return &timeoutError{err: err}
	}
	return err
}

// stallTally counts one round's probes discounted for a stall, for one log
// line a round.
type stallTally struct {
	mu    sync.Mutex
	n     int
	worst time.Duration
}

func (s *stallTally) add(late time.Duration) {
	s.mu.Lock()
	s.n++
	s.worst = max(s.worst, late)
	s.mu.Unlock()
}

func (s *stallTally) get() (int, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.worst
}
