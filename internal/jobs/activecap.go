package jobs

import (
	"errors"
	"math"
	"strings"
	"sync"
)

// Defaults of Options.MaxActiveBatches and MaxActiveBatchesPerTenant. A
// tracker keeps, per active batch, a KV watch and a state per job (a few
// hundred bytes while the job is pending): at 50,000 lines a batch, the
// bound is what keeps a flood of batches from growing every gateway's
// memory.
const (
	DefaultMaxActiveBatches          = 128
	DefaultMaxActiveBatchesPerTenant = 16
)

// ErrTooManyBatches refuses a batch while the active ones are at their
// bound, in all or for its tenant (429: retry when one has finished).
var ErrTooManyBatches = errors.New("too many active batches")

// activeBatches is what CreateBatch checks the bounds against: the active
// batches the tracker saw at its last scan (every process's tracker sees
// every active batch, through the a.* index), by tenant, plus the ones
// this process is creating or created since that scan's listing began.
// So concurrent creations here cannot overshoot; creations on other
// replicas count once their trackers' scans (nudged by every creation)
// have seen them.
type activeBatches struct {
	mu       sync.Mutex
	total    int
	byTenant map[string]int // by tenant hash, as the batch keys name it
	scans    uint64         // scans begun
	pending  map[string]pendingBatch
	refused  uint64
}

// pendingBatch is a batch created here and not yet seen by a scan: after
// is the number of scans begun when its index entry was written (a scan
// begun later lists it), math.MaxUint64 while not written yet.
type pendingBatch struct {
	tenant string
	after  uint64
}

// reserve counts batch id of tenant (a hash) as active, or refuses it.
func (a *activeBatches) reserve(id, tenant string, maxTotal, maxTenant int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	total, mine := a.total+len(a.pending), a.byTenant[tenant]
	for _, p := range a.pending {
		if p.tenant == tenant {
			mine++
		}
	}
	if total >= maxTotal || mine >= maxTenant {
		a.refused++
		return ErrTooManyBatches
	}
	if a.pending == nil {
		a.pending = map[string]pendingBatch{}
	}
	a.pending[id] = pendingBatch{tenant: tenant, after: math.MaxUint64}
	return nil
}

// indexed notes that id's index entry is written: the next scan lists it.
func (a *activeBatches) indexed(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.pending[id]; ok {
		p.after = a.scans
		a.pending[id] = p
	}
}

// release forgets a reservation whose batch was not created.
func (a *activeBatches) release(id string) {
	a.mu.Lock()
	delete(a.pending, id)
	a.mu.Unlock()
}

// beginScan marks a scan's listing about to start; seen takes its number.
func (a *activeBatches) beginScan() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.scans++
	return a.scans
}

// seen records what scan number scan found: the batch keys of the active
// batches ("t.<tenant hash>.<id>"). Reservations indexed before it began
// are in it (or finished already).
func (a *activeBatches) seen(scan uint64, keys []string) {
	byTenant := make(map[string]int, len(keys))
	listed := make(map[string]bool, len(keys))
	for _, k := range keys {
		if rest, ok := strings.CutPrefix(k, "t."); ok {
			tenant, id, _ := strings.Cut(rest, ".")
			byTenant[tenant]++
			listed[id] = true
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total, a.byTenant = len(keys), byTenant
	for id, p := range a.pending {
		// A scan that began before the index entry was written may still
		// have listed it: then it is counted in total, not twice.
		if p.after < scan || listed[id] {
			delete(a.pending, id)
		}
	}
}

// counts are the active batches now (seen plus pending) and the
// refusals so far.
func (a *activeBatches) counts() (active int, refused uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total + len(a.pending), a.refused
}

// isPending reports whether id is a creation here no scan has seen yet.
func (a *activeBatches) isPending(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.pending[id]
	return ok
}
