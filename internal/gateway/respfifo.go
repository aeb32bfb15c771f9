package gateway

import "sync"

// ownerFIFO is the response owner map's store: the newest max ids, each
// with its owner, forgotten oldest first. Remembering the newest is the
// policy an id map needs: a response's follow-ups and continuations come
// soon after it, and every id is used about as often as any other. A
// frequency-admitting cache (W-TinyLFU: otter, which this replaced) keeps
// a new id only while it sits in its small window (1% of the bound) and
// then turns it away in favour of an older one used as rarely, so under a
// steady stream of responses a continuation seconds later could find its
// id gone (TestRespOwnersKeepTheNewest). One mutex: a remember is one per
// relayed response and a lookup one per follow-up, far below contention.
type ownerFIFO struct {
	mu    sync.Mutex
	ids   map[string]fifoEntry
	order []fifoSlot // a ring, in the order remembered; grows to max
	head  int        // the oldest slot, once the ring is full
	max   int
	seq   uint64
	// evicted is told of an id pushed out by the bound while remembered.
	evicted func(respOwner)
}

type fifoEntry struct {
	owner respOwner
	seq   uint64 // which slot of order holds it (an id forgotten and remembered again has a newer one)
}

type fifoSlot struct {
	id  string
	seq uint64
}

func newOwnerFIFO(max int, evicted func(respOwner)) *ownerFIFO {
	return &ownerFIFO{ids: make(map[string]fifoEntry), max: max, evicted: evicted}
}

// set remembers id's owner as the newest, pushing out the oldest at the
// bound.
func (f *ownerFIFO) set(id string, owner respOwner) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	f.ids[id] = fifoEntry{owner: owner, seq: f.seq}
	slot := fifoSlot{id: id, seq: f.seq}
	if len(f.order) < f.max {
		f.order = append(f.order, slot)
		return
	}
	old := f.order[f.head]
	f.order[f.head] = slot
	f.head = (f.head + 1) % f.max
	// The slot's id is gone already if it was forgotten, or remembered
	// again since (its entry names a newer slot).
	if e, ok := f.ids[old.id]; ok && e.seq == old.seq {
		delete(f.ids, old.id)
		f.evicted(e.owner)
	}
}

func (f *ownerFIFO) get(id string) (respOwner, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.ids[id]
	return e.owner, ok
}

// forget drops id, reporting whether it was remembered. Its slot in the
// ring stays until the ring comes round to it.
func (f *ownerFIFO) forget(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.ids[id]
	delete(f.ids, id)
	return ok
}

func (f *ownerFIFO) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ids)
}

// fifoID is an id and its owner, as snapshot lists them.
type fifoID struct {
	id    string
	owner respOwner
}

// snapshot lists the ids remembered, oldest first: a copy, taken under
// the lock and read outside it.
func (f *ownerFIFO) snapshot() []fifoID {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]fifoID, 0, len(f.ids))
	for i := range f.order {
		slot := f.order[(f.head+i)%len(f.order)]
		if e, ok := f.ids[slot.id]; ok && e.seq == slot.seq {
			out = append(out, fifoID{slot.id, e.owner})
		}
	}
	return out
}
