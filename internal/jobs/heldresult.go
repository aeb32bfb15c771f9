package jobs

import (
	"errors"
	"sync/atomic"
)

// DefaultMaxHeldResultBytes is Options.MaxHeldResultBytes' default.
const DefaultMaxHeldResultBytes = 64 << 20

// heldResults bounds the memory of the results a process's workers hold
// while the job store refuses to record them (every RunWorker of a Store
// shares it): a result is kept only while the bytes held stay within
// the bound.
type heldResults struct {
	limit   int64
	bytes   atomic.Int64
	n       atomic.Int64
	dropped atomic.Uint64 // results the bound left to run again
}

// take counts size against the bound, reporting whether it fits.
func (h *heldResults) take(size int64) bool {
	for {
		cur := h.bytes.Load()
		if cur+size > h.limit {
			return false
		}
		if h.bytes.CompareAndSwap(cur, cur+size) {
			h.n.Add(1)
			return true
		}
	}
}

func (h *heldResults) give(size int64) {
	h.bytes.Add(-size)
	h.n.Add(-1)
}

// resultSize is what holding res costs, as counted against the bound.
func resultSize(res Result) int64 { return int64(len(res.Body) + len(res.RequestID) + 64) }

// errGivenBack ends the holding of a result when the worker stops first:
// the caller gives the message back.
var errGivenBack = errors.New("the worker stopped while the job store refused its result")

// holdResult keeps a finished job's result that the store refused for
// lack of room (refused is that refusal) and writes it again with record
// whenever the worker's store pause lets a write through (storepause.go:
// a refused write begins a pause or joins it; backoffs, readings of the
// store's usage, one probe at a time), until it is written or the write
// fails otherwise. Throwing it away left the message unacked, and the
// job ran again after AckWait, spending backend time on a result that
// could not be stored either: the slot keeps its message meanwhile (its
// heartbeats go on, so it is not redelivered), the job stays running
// under this delivery, and nothing is marked done without its result.
//
// Past Options.MaxHeldResultBytes it returns refused at once (the job
// runs again after AckWait, as before holding existed); errGivenBack if
// the worker stops before a write gets through.
func (w *worker) holdResult(d *delivery, res Result, refused error, record func() (*jobRecord, bool, error)) (*jobRecord, bool, error) {
	s := w.s
	h := &s.held
	size := resultSize(res)
	// A refused write begins a pause, or joins the one under way: the
	// worker takes no new job either way.
	w.pause.done(false, refused, &s.stats.resultsRefused)
	if !h.take(size) {
		h.dropped.Add(1)
		s.log.Warn("job store full and the results held at their bound: this result is dropped, the job runs again after AckWait",
			"key", d.key, "result_bytes", size, "held_bytes", h.bytes.Load(), "max_held_result_bytes", h.limit)
		return nil, false, refused
	}
	defer h.give(size)
	s.log.Debug("job store full: the result is held until it can be written", "key", d.key, "result_bytes", size)
	return w.writeWhenRoom(record, &s.stats.resultsRefused)
}

// writeWhenRoom writes again with record a write of a delivery's
// bookkeeping the store refused for lack of room (a result, a requeue),
// whenever the worker's store pause lets a write through, until it is
// written or fails otherwise; refused tries are counted in refusals. The
// caller has told the pause of the first refusal and keeps its message
// meanwhile (heartbeats on). errGivenBack if the worker stops first and
// one last try is refused too: the caller gives the message back.
func (w *worker) writeWhenRoom(record func() (*jobRecord, bool, error), refusals *atomic.Uint64) (*jobRecord, bool, error) {
	for {
		probe, ok := w.pause.admit()
		if !ok {
			// Stopping: one last try, then the message goes back.
			if rec, changed, err := record(); err == nil {
				return rec, changed, nil
			}
			return nil, false, errGivenBack
		}
		rec, changed, err := record()
		if !w.pause.done(probe, writeOutcome(changed, err), refusals) {
			return rec, changed, err
		}
	}
}
