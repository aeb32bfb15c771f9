package jobs

import (
	"errors"
	"sync/atomic"
)

// MaxFileListings bounds the GET /v1/files listings a process runs at
// once. The object store keeps no index by tenant, so every listing reads
// the metadata of every file of every tenant (ListFiles) and holds it
// until its page is written: measured on the binary with 10,000 files
// (2026-12-08, RELIABILITY "File listings"), 16 concurrent listings of
// limit=1 held 362 MiB of heap at their peak (from 80), took 10.8 s each
// (p50) and a third of them ran past the store's request timeout into
// 503s. Past the bound a listing is refused at once (ErrTooManyListings:
// 503 with Retry-After) rather than queued, so its memory is never taken.
const MaxFileListings = 4

// ErrTooManyListings refuses a file listing while MaxFileListings run.
var ErrTooManyListings = errors.New("too many file listings are running")

// listingGate counts the file listings running and those refused; the
// zero value is ready.
type listingGate struct {
	running atomic.Int64
	refused atomic.Uint64
}

// enter takes a listing's slot, or reports false (counted) at the bound;
// a true enter is followed by leave.
func (g *listingGate) enter() bool {
	if g.running.Add(1) > MaxFileListings {
		g.running.Add(-1)
		g.refused.Add(1)
		return false
	}
	return true
}

func (g *listingGate) leave() { g.running.Add(-1) }
