package gateway

import (
	"net/http"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
)

// workerRuns counts the separate workers' job requests running on the
// admin listener (serveWorkerJob), so that a shutdown can wait for them
// as it waits for the public requests, and refuses new ones once the
// gateway drains. Before, the admin listener took jobs through the whole
// drain and was closed under the running ones when Run returned: the
// worker saw a cut connection, counted the attempt (dead-lettering a job
// on its last) and ran it again.
type workerRuns struct {
	mu       sync.Mutex
	n        int
	draining bool
	idle     chan struct{} // closed once draining with none running
}

// enter admits a worker's job request; false once the gateway drains.
func (w *workerRuns) enter() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.draining {
		return false
	}
	w.n++
	return true
}

func (w *workerRuns) exit() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n--
	if w.n == 0 && w.draining {
		close(w.idle)
	}
}

func (w *workerRuns) drain() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.draining {
		w.draining = true
		w.idle = make(chan struct{})
		if w.n == 0 {
			close(w.idle)
		}
	}
	return w.idle
}

func (w *workerRuns) isDraining() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.draining
}

// DrainWorkers starts the drain of the separate workers' jobs (a
// shutdown's first signal): from now on the admin listener refuses their
// new job requests and /spare answers 503 shutting_down at once, so a
// worker gives the job back to the queue uncounted and backs off from
// this gateway, instead of starting a job the drain would cut. The
// running ones go on; the returned channel is closed when none is left.
// Their requests' contexts are the server's (app): cut at the drain's end
// with proxy.ErrShuttingDown as the public requests are, they are
// answered 503 shutting_down, which the worker takes as busy: back to the
// queue, the attempt not counted. Safe to call more than once.
func (g *Gateway) DrainWorkers() <-chan struct{} { return g.workers.drain() }

// errWorkerDraining refuses a worker's job, or its ask for room, on a
// gateway that is shutting down.
var errWorkerDraining = &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "shutting_down",
	Message:    "the gateway is shutting down and takes no new job; it goes back to the queue",
	RetryAfter: time.Second}
