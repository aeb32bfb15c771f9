package cache

import (
	"crypto/sha256"
	"fmt"
	"hash/maphash"
	"sync"
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
// process. The memo is bounded by entry count: a full shard drops an
// arbitrary entry (the first its map iterates) for a new one. An entry
// costs only a parse to make again, so a plain map under a read lock,
// about a third of the instructions of a W-TinyLFU cache's lookup and
// bookkeeping, is the better trade on every hit. Safe for concurrent use.
type Memo struct {
	shards    []memoShard
	perShard  int
	seed1, s2 maphash.Seed
	evicted   atomic.Uint64 // entries dropped for new ones (set; never on a fresh hit)
}

// memoShard is one lock's share of a Memo. Its map is keyed by one half
// of a body's id, and an entry answers only the body of its whole id: a
// map of word keys is looked up for about a third of the instructions of
// one of two-word keys. Two bodies whose ids share that half (a chance
// of 2^-64 a pair) take turns in one entry.
type memoShard struct {
	mu sync.RWMutex
	m  map[uint64]*Parsed
}

// memoShards is how many locks a Memo's entries are spread over, so that
// requests on several cores rarely meet on one.
const memoShards = 16

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
	k := min(n, memoShards)
	m := &Memo{shards: make([]memoShard, k), perShard: n / k, seed1: maphash.MakeSeed(), s2: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].m = make(map[uint64]*Parsed)
	}
	return m, nil
}

// Capacity is the most bodies m keeps.
func (m *Memo) Capacity() int { return m.perShard * len(m.shards) }

// Len counts the bodies m keeps now (a lock per shard: for a scrape, not
// for the request path).
func (m *Memo) Len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// Evictions counts the entries dropped to make room for new ones.
func (m *Memo) Evictions() uint64 { return m.evicted.Load() }

func (m *Memo) shard(id bodyID) *memoShard { return &m.shards[id.b%uint64(len(m.shards))] }

func (m *Memo) get(id bodyID) *Parsed {
	sh := m.shard(id)
	sh.mu.RLock()
	p := sh.m[id.a]
	sh.mu.RUnlock()
	if p == nil || p.id != id {
		return nil
	}
	return p
}

func (m *Memo) set(p *Parsed) {
	sh := m.shard(p.id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[p.id.a]; !ok && len(sh.m) >= m.perShard {
		for a := range sh.m {
			delete(sh.m, a)
			break
		}
		m.evicted.Add(1)
	}
	sh.m[p.id.a] = p
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
