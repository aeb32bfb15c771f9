package jobs

import (
	"errors"
	"sync"
)

// ErrBatchTooLarge refuses a batch whose results alone are expected to
// take the store's admission line: no delete or retention makes room
// for it, so it is not ErrStoreFull (507, "delete files"); the client
// is told to split its input (400).
var ErrBatchTooLarge = errors.New("batch too large for the job store")

// Room reserved for the results of accepted batches.
//
// The admission line (storecap.go) was a share, not a reservation: a
// store filled to the line by batches' inputs (bodies, records, the
// input file) admitted them, and their results then met JetStream's hard
// bound with most lines still queued (measured through the binary: a
// 4 MiB store, two batches of 1,500 lines accepted, 609 of 3,000 lines
// done when the store reached the bound; the rest stalled until a delete
// or retention freed room). A gateway should not accept work it then
// cannot finish. So admission also counts the bytes the active batches
// are still expected to write, and a new batch its own: new work is
// refused (507 storage_full, as at the line) once
//
//	used + reserved (+ the new batch's expected bytes) >= the admission line.
//
// The estimate, per line of a batch not yet finalized: a line finished
// writes its record with the answer, and the output or error file
// repeats the answer at finalization, so each line still to finish is
// expected to write two copies of
//
//	max(the batch's input bytes per line, the mean stored record of its
//	    lines finished so far) + lineOverheadBytes
//
// and each finished line one more (its file line): the bytes of its
// record. No bound serves better: an answer may be up to
// DefaultMaxAnswerBytes (64 MiB), which would reserve the whole store
// for one line. The input size is the guess before any line has
// finished (a chat answer the size of its prompt); the observed mean
// takes over when answers run larger. The reservation is an estimate:
// answers larger than it, or other replicas' creations within a
// tracker's scan, still meet the headroom the line keeps and, past it,
// the worker's pause (storepause.go). Every process's tracker watches
// every active batch, so each gateway reserves for all of them, its own
// creations from the moment they are admitted.

// lineOverheadBytes is a stored line's bytes beside its answer: a job
// record's fields, or an output line's wrapper, and JetStream's own
// per-message header (measured: 350-450 bytes for a record, 150 for an
// output line's wrapper).
const lineOverheadBytes = 512

// reservations are the bytes each active batch is expected to write yet.
type reservations struct {
	mu    sync.Mutex
	byID  map[string]int64
	total int64
}

// set records batch id's expected bytes.
func (r *reservations) set(id string, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil {
		r.byID = map[string]int64{}
	}
	r.total += n - r.byID[id]
	r.byID[id] = n
}

// drop forgets batch id: finalized, or its creation refused.
func (r *reservations) drop(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total -= r.byID[id]
	delete(r.byID, id)
}

// prune forgets the batches keep does not want: an actor that stopped
// unfinished (its connection dropped) leaves its batch's reservation,
// and another process may finalize the batch before a scan here starts
// another actor on it.
func (r *reservations) prune(keep func(id string) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, n := range r.byID {
		if !keep(id) {
			r.total -= n
			delete(r.byID, id)
		}
	}
}

// sum is the bytes reserved for every active batch.
func (r *reservations) sum() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// batchExpectedBytes is what a batch's lines are expected to write: left
// lines still to finish with perLine bytes each (two copies), plus done,
// the finished lines' records (one more copy, in the result files).
func batchExpectedBytes(left int, perLine, done int64) int64 {
	return 2*int64(left)*perLine + done
}

// inputPerLine is the estimate of a line's stored bytes before any has
// finished: the batch's input bytes per line, plus the overhead.
func inputPerLine(inputBytes int64, lines int) int64 {
	if lines <= 0 {
		return lineOverheadBytes
	}
	return inputBytes/int64(lines) + lineOverheadBytes
}

// newBatchExpectedBytes is what a batch being created is expected to
// write: every line still to finish.
func newBatchExpectedBytes(sp BatchSpec) int64 {
	var in int64
	for _, r := range sp.Requests {
		in += int64(len(r.Body))
	}
	return batchExpectedBytes(len(sp.Requests), inputPerLine(in, len(sp.Requests)), 0)
}

// expectedBytes is what the actor's batch is expected to write yet, by
// the estimate above; -1 while its watch has not delivered every record.
func (a *actor) expectedBytes() int64 {
	if !a.ready || a.total <= 0 {
		return -1
	}
	perLine := inputPerLine(a.inputBytes, a.total)
	if a.doneLines > 0 {
		perLine = max(perLine, a.doneBytes/int64(a.doneLines))
	}
	return batchExpectedBytes(max(a.total-a.terminal, 0), perLine, a.doneBytes)
}

// reserve publishes the actor's expected bytes to admission.
func (a *actor) reserve() {
	if a.s.o.MaxStoreBytes <= 0 {
		return // unbounded: admission reads no reservation
	}
	if n := a.expectedBytes(); n >= 0 {
		a.s.reserved.set(a.id, n)
	}
}
