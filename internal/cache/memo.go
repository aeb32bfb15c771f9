package cache

import (
	"crypto/sha256"
	"fmt"
	"hash/maphash"
	"math/bits"
	"sync/atomic"

	"github.com/sluice-gw/sluice/internal/openai"
)

// Memo remembers, per exact request body, what the gateway derives from it
// by decoding JSON: the peeked fields and the cache digest. Clients that
// repeat a request usually send the very same bytes, and hashing them is
// far cheaper than two JSON passes, so a repeated cacheable request — a
// cache hit — decodes nothing. Only bodies that may be cached are kept
// (the caller says which), so other traffic adds nothing but the lookup.
//
// Bodies are identified by 128 bits of two randomly seeded maphash sums:
// collisions are negligible and cannot be aimed at from outside the
// process. The memo is bounded by entry count: it is a table of n slots,
// read without a lock. A body's id names two neighbouring slots; a new
// body takes the first empty one, else replaces one of the two (an
// arbitrary one: its id's low bit). An entry costs only a parse to make
// again, so a table read with one atomic load, no map and no lock (the
// sharded map under read locks it replaces spanned ~9 code lines a cache
// hit, docs/BENCHMARKS.md §9 Step 8; a W-TinyLFU cache's lookup and
// bookkeeping three times the instructions of that map) is the better
// trade on every hit. Safe for concurrent use.
type Memo struct {
	slots     []atomic.Pointer[Parsed]
	seed1, s2 maphash.Seed
	held      atomic.Int64  // slots filled (never emptied again)
	evicted   atomic.Uint64 // entries dropped for new ones (set; never on a fresh hit)
}

type bodyID struct{ a, b uint64 }

// Parsed is what Memo remembers about one body.
type Parsed struct {
	id     bodyID
	Peek   openai.Peek
	digest *[sha256.Size]byte // nil until a key was asked for
	// last is the key last derived, in its scope: a repeated request
	// (a cache hit) comes back in the same scope, and the key is a second
	// SHA-256 pass that would otherwise run on every hit.
	last *scopedKey
}

type scopedKey struct {
	scope Scope
	key   string
}

// NewMemo returns a Memo of at most n bodies (n > 0).
func NewMemo(n int) (*Memo, error) {
	if n <= 0 {
		return nil, fmt.Errorf("cache: request memo of %d bodies", n)
	}
	return &Memo{slots: make([]atomic.Pointer[Parsed], n), seed1: maphash.MakeSeed(), s2: maphash.MakeSeed()}, nil
}

// Capacity is the most bodies m keeps.
func (m *Memo) Capacity() int { return len(m.slots) }

// Len counts the bodies m keeps now.
func (m *Memo) Len() int { return int(m.held.Load()) }

// Evictions counts the entries dropped to make room for new ones.
func (m *Memo) Evictions() uint64 { return m.evicted.Load() }

// slot is the first of id's two slots (the next one, wrapping, is the
// second): id.a scaled to the table's length, a multiply, no division.
func (m *Memo) slot(id bodyID) int {
	hi, _ := bits.Mul64(id.a, uint64(len(m.slots)))
	return int(hi)
}

// next is the slot after i, wrapping.
func (m *Memo) next(i int) int {
	if i++; i == len(m.slots) {
		return 0
	}
	return i
}

func (m *Memo) get(id bodyID) *Parsed {
	i := m.slot(id)
	if p := m.slots[i].Load(); p != nil && p.id == id {
		return p
	}
	return m.second(id, i)
}

// second is get's look at id's second slot, out of the hit's line.
func (m *Memo) second(id bodyID, i int) *Parsed {
	if p := m.slots[m.next(i)].Load(); p != nil && p.id == id {
		return p
	}
	return nil
}

// set keeps p: in the slot of its id's two that holds its body already,
// else in the first empty one, else in place of an arbitrary one.
func (m *Memo) set(p *Parsed) {
	i := m.slot(p.id)
	j := m.next(i)
	for _, k := range [2]int{i, j} {
		if old := m.slots[k].Load(); old != nil && old.id == p.id {
			m.slots[k].Store(p) // the same body, keyed now
			return
		}
	}
	for _, k := range [2]int{i, j} {
		if m.slots[k].CompareAndSwap(nil, p) {
			m.held.Add(1)
			return
		}
	}
	k := i
	if p.id.b&1 == 1 {
		k = j
	}
	if old := m.slots[k].Swap(p); old.id != p.id {
		m.evicted.Add(1)
	}
}

// Parse returns the body's peek, from the memo when the same bytes were
// parsed and kept before.
func (m *Memo) Parse(body []byte) (*Parsed, error) {
	id := bodyID{maphash.Bytes(m.seed1, body), maphash.Bytes(m.s2, body)}
	if p := m.get(id); p != nil {
		return p, nil
	}
	peek, err := openai.ParseRequest(body)
	if err != nil {
		return nil, err
	}
	return &Parsed{id: id, Peek: peek}, nil
}

// Key returns the cache key of the parsed body in scope s and keeps the
// body in the memo: the caller asks only for cacheable requests.
func (m *Memo) Key(p *Parsed, body []byte, s Scope) (string, error) {
	if s.Model == "" {
		s.Model = p.Peek.Model
	}
	if last := p.last; last != nil && last.scope == s {
		return last.key, nil
	}
	digest := p.digest
	if digest == nil {
		d, _, _, err := Digest(body)
		if err != nil {
			return "", err
		}
		digest = &d
	}
	k := KeyOf(*digest, s)
	// Entries are shared and read concurrently: store a new one rather
	// than filling this one in.
	m.set(&Parsed{id: p.id, Peek: p.Peek, digest: digest, last: &scopedKey{scope: s, key: k}})
	return k, nil
}
