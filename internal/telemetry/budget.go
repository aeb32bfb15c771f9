package telemetry

import (
	"sync"
	"time"
)

// LineBudget bounds how many lines of one kind are written per second
// (Envoy's access log sampling, nginx's limit_req_log_level spirit): the
// access lines of requests the gateway refused itself, without a backend,
// cost nothing to provoke, so a flood of junk (10,000 bad requests a
// second) would otherwise write the log as fast as the network delivers
// it and rotate the lines that matter (errors, backend warnings) out of a
// rotated log within seconds. Each second, the first perSecond lines pass;
// the rest are counted, and the caller is told the count of a second that
// had any once the next second starts, for one summary line. The window
// is a calendar second of the clock passed in, so tests choose the time.
// Safe for concurrent use; the zero value is not usable (NewLineBudget).
type LineBudget struct {
	mu         sync.Mutex
	window     int64 // the second (Unix) being counted
	passed     int   // lines let through in window
	suppressed int64 // lines held back in window
}

// NewLineBudget returns a budget with no line counted yet.
func NewLineBudget() *LineBudget { return &LineBudget{} }

// Allow reports whether one more line may be written at now, perSecond
// lines a second (perSecond <= 0: every line). prev is the number of
// lines a previous second held back, reported once, by the first call in
// a later second: the caller writes one line saying so.
func (b *LineBudget) Allow(now time.Time, perSecond int) (ok bool, prev int64) {
	if perSecond <= 0 {
		return true, 0
	}
	sec := now.Unix()
	b.mu.Lock()
	defer b.mu.Unlock()
	if sec != b.window {
		prev = b.suppressed
		b.window, b.passed, b.suppressed = sec, 0, 0
	}
	if b.passed < perSecond {
		b.passed++
		return true, prev
	}
	b.suppressed++
	return false, prev
}
