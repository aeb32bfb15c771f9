package cache

import (
	"crypto/sha256"
	"fmt"
	"hash/maphash"

	"github.com/maypok86/otter/v2"

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
// process. The memo is bounded by entry count (W-TinyLFU). Safe for
// concurrent use.
type Memo struct {
	c         *otter.Cache[bodyID, *Parsed]
	seed1, s2 maphash.Seed
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

// NewMemo returns a Memo of at most n bodies.
func NewMemo(n int) (*Memo, error) {
	c, err := otter.New(&otter.Options[bodyID, *Parsed]{MaximumSize: n})
	if err != nil {
		return nil, fmt.Errorf("cache: request memo: %w", err)
	}
	return &Memo{c: c, seed1: maphash.MakeSeed(), s2: maphash.MakeSeed()}, nil
}

// Parse returns the body's peek, from the memo when the same bytes were
// parsed and kept before.
func (m *Memo) Parse(body []byte) (*Parsed, error) {
	id := bodyID{maphash.Bytes(m.seed1, body), maphash.Bytes(m.s2, body)}
	if p, ok := m.c.GetIfPresent(id); ok {
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
	m.c.Set(p.id, &Parsed{id: p.id, Peek: p.Peek, digest: digest, last: &scopedKey{scope: s, key: k}})
	return k, nil
}

// Close stops the memo's background goroutines.
func (m *Memo) Close() { m.c.StopAllGoroutines() }
