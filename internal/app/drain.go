package app

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/proxy"
)

// cutBound is how long the requests still running when the drain ends
// (shutdown_grace over, or Cut) get to write their answers once cancelled:
// a 503 shutting_down, or a stream's in-band error event. A cancelled
// request returns within milliseconds; a client that reads nothing is
// bounded by server.send_timeout, and past cutBound its connection is
// closed. StopBound adds it up.
const cutBound = 2 * time.Second

// cutFor is the cut's bound for this App: cutBound unless a test set
// App.cutWait.
func (a *App) cutFor() time.Duration {
	if a.cutWait == 0 {
		return cutBound
	}
	return a.cutWait
}

// jobStopGrace is what the in-process job workers give running jobs when
// the queue closes outside a shutdown's drain (Run ending on a listener's
// failure), before they cancel them and hand them back to the queue. A
// shutdown gives them its drain instead (drainJobs).
const jobStopGrace = 5 * time.Second

// StopBound is the longest a shutdown takes with shutdown_grace grace:
// the drain, in which running jobs finish too, the cut's answers, while
// which the jobs cut with the requests go back to the queue, and the job
// queue's stop (queueStopBound, and what the drain and the cut left of
// theirs: queueCloseBound; the log's flush, bounded at 5 s for a
// stderr that takes nothing, comes on top). A supervisor's kill timeout
// (Kubernetes' terminationGracePeriodSeconds less the preStop pause,
// systemd's TimeoutStopSec) must exceed it.
func StopBound(grace time.Duration) time.Duration {
	return AddBounds(grace, cutBound, queueStopBound)
}

// CutBound and QueueStopBound are cutBound and queueStopBound for
// `sluice worker`, whose stop is bounded as serve's job queue stop is
// (its jobs' hand-back after the cut, then its store's close): one
// number each, so the two stops cannot drift apart.
const (
	CutBound       = cutBound
	QueueStopBound = queueStopBound
)

// drainJobs starts the job workers' drain at the start of a shutdown: from
// the first signal they take no new job (another replica, or the next
// start, takes it: delivery is at least once), where before they took
// jobs until the end of the drain, and any still running then was cut
// after 5 s and run again elsewhere. The running jobs get the drain, as
// requests do: when shutCtx ends (shutdown_grace over, or Cut) they are
// cancelled and handed back to the queue, their attempt not counted. A
// queue that connects from now on is not installed. The returned wait
// returns once the workers stopped, or cutBound after the cut: a worker
// blocked on a NATS that answers nothing (a wedged embedded server,
// docs/RELIABILITY.md kvwedge) kept the shutdown waiting for good.
func (a *App) drainJobs(shutCtx context.Context) (wait func()) {
	a.jobsMu.Lock()
	defer a.jobsMu.Unlock()
	a.closing = true
	q := a.jobs
	if q == nil {
		return func() {}
	}
	q.stopTaking()
	stopped := make(chan struct{})
	go func() { q.workerWG.Wait(); close(stopped) }()
	cutOver := make(chan struct{}) // closed cutBound after the cut, or when the workers stopped
	stop := context.AfterFunc(shutCtx, func() {
		defer close(cutOver)
		select {
		case <-stopped:
			return
		default:
			a.log.Warn("drain over (shutdown_grace passed, or a second signal); cutting the jobs still running, they go back to the queue")
			q.cutJobs()
		}
		fire, stopTimer := a.timer(a.cutFor())
		defer stopTimer()
		select {
		case <-stopped:
		case <-fire:
		}
	})
	return func() {
		select {
		case <-stopped:
		case <-cutOver:
			select {
			case <-stopped:
			default:
				a.log.Warn("job workers still running after the cut (NATS not answering); closing the queue under them", "bound", a.cutFor().String())
			}
		}
		stop()
	}
}

// drainCut ends the public listener's drain early: a second SIGTERM or
// SIGINT during the drain (cmd/sluice) calls Cut.
type drainCut struct {
	once sync.Once
	ch   chan struct{} // closed by Cut
	at   atomic.Int64  // when Cut came (Deps.Now, ns); 0 before
}

// Cut ends a shutdown's drain at once: the requests still running are
// cut as when shutdown_grace ends, and Run returns. Before a shutdown it
// makes the next one skip the drain. Safe to call more than once and from
// any goroutine.
func (a *App) Cut() {
	a.cut.once.Do(func() {
		a.cut.at.Store(a.deps.Now().UnixNano())
		close(a.cut.ch)
	})
}

// queueCloseBound is the bound of the job queue's stop at the end of a
// shutdown: queueStopBound, and what the drain and the cut left of
// theirs (shutdown_grace + cutBound from the first signal, cutBound from
// a Cut when that is sooner: a second signal only shortens the stop), so
// that a NATS slow to let go but answering is waited for as long as the
// supervisor waits anyway (StopBound), where a fixed 5 s gave it up with
// seconds of the stop's budget unused, and the stop still ends within
// StopBound of the first signal whenever the drain ended. Outside a
// shutdown (Run ending on a listener's failure, an App that never ran):
// queueStopBound. The same rule as `sluice worker`'s close (closeBound).
func (a *App) queueCloseBound() time.Duration {
	a.jobsMu.Lock()
	due := a.stopDue
	a.jobsMu.Unlock()
	base := a.queueStopBase
	if base == 0 {
		base = queueStopBound
	}
	if due.IsZero() {
		return base
	}
	if at := a.cut.at.Load(); at != 0 {
		if cutDue := time.Unix(0, at).Add(a.cutFor()); cutDue.Before(due) {
			due = cutDue
		}
	}
	return AddBounds(base, max(0, due.Sub(a.deps.Now())))
}

// drainServer shuts srv down: no new connections, idle ones closed, in-flight
// requests given until shutCtx ends (shutdown_grace) or Cut. Those still
// running then are cancelled with proxy.ErrShuttingDown as their
// context's cause (cut), which the gateway answers 503 shutting_down with
// Retry-After (a stream already committed: an in-band error event), where
// before the connections were closed under them: a non-stream client got
// an empty reply, a stream ended without [DONE] or an error, both alike to
// a crash. They get cutBound to write it; then what is left is closed.
// Cut cancels shutCtx (cancel), so what runs after it is cut short too.
func (a *App) drainServer(srv *http.Server, shutCtx context.Context, cancel context.CancelFunc, cut context.CancelCauseFunc) {
	go func() { // ends with shutCtx, which Cut or the grace ends
		select {
		case <-a.cut.ch:
			cancel()
		case <-shutCtx.Done():
		}
	}()
	if err := srv.Shutdown(shutCtx); err == nil {
		return
	}
	a.log.Warn("drain over (shutdown_grace passed, or a second signal); answering the requests still running 503 shutting_down",
		"bound", a.cutFor().String())
	cut(proxy.ErrShuttingDown)
	cutCtx, cancelCut := context.WithTimeout(context.Background(), a.cutFor())
	defer cancelCut()
	if err := srv.Shutdown(cutCtx); err != nil {
		a.log.Warn("closing the connections still open after the cut", "error", err.Error())
		srv.Close()
	}
}

// drainWorkers gives the separate workers' jobs running through the admin
// listener (the gateway refuses new ones from the first signal:
// Gateway.DrainWorkers) the rest of the drain, as the public requests
// have. Those still running when it ends (shutdown_grace, or Cut) are cut
// with proxy.ErrShuttingDown and get cutBound to answer 503
// shutting_down, which their worker takes as busy: back to the queue, the
// attempt not counted. Before, they ran on until Run returned and the
// admin listener was closed under them, at whatever time the public
// drain had ended: the worker saw a cut connection and counted the
// attempt. Run closes the admin listener only after this returns.
func (a *App) drainWorkers(idle <-chan struct{}, shutCtx context.Context, cut context.CancelCauseFunc) {
	select {
	case <-idle:
		return
	case <-shutCtx.Done():
	}
	a.log.Warn("drain over (shutdown_grace passed, or a second signal); answering the workers' jobs still running 503 shutting_down, they go back to the queue",
		"bound", a.cutFor().String())
	cut(proxy.ErrShuttingDown)
	t := time.NewTimer(a.cutFor())
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
		a.log.Warn("workers' jobs still running after the cut; the admin listener closes under them")
	}
}

// joinCallWorkers waits for the workers that run streams' first writes
// and the lean clients' dials (proxy.Workers), every runtime's, once
// their owners are closed (Transport.Close, Built.Retire; a reload's
// retired runtime was closed at its swap): before, they ended on their
// own 1 s idle timer, joined by nobody. Bounded by timeouts.connect: the
// drain is over, so the longest call left is a dial (a first write's
// connection was drained or closed under it).
func (a *App) joinCallWorkers() {
	bound := max(a.built.Runtime.Config.Timeouts.Connect.D(), time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := a.deps.Transport.Workers().Wait(ctx); err != nil {
		a.log.Warn("stop: call workers still running past their bound", "bound", bound.String(), "error", err.Error())
	}
}
