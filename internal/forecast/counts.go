package forecast

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Counts counts arrivals per key in an open interval so that a live
// request's count is a few atomic adds, without its owner's lock: the
// interval's tallies are found through a map that is replaced, never
// changed, once published. Its owner keeps a mutex of its own (the slow
// path) and calls every method but TryAdd with it held: to open and close
// intervals and to add keys the open interval has no tally for yet.
type Counts[K comparable] struct {
	cur atomic.Pointer[window[K]] // nil: no interval open (the slow path)
}

// window is one open interval's tallies. gate lets Close wait out the
// adds that found the window open before it was closed: an add holds it
// shared, and checks under it that its window is still the open one.
type window[K comparable] struct {
	end     time.Time
	gate    sync.RWMutex
	tallies atomic.Pointer[map[K]*Tally]
	seen    atomic.Int64 // how many tallies were added to
}

// Tally is one key's arrivals in an interval.
type Tally struct {
	requests, tokens atomicFloat
	// seen: something was added. Tallies are also made ahead for keys
	// that are likely to come (Open's carry); those are not counted as
	// seen until they do.
	seen atomic.Bool
}

// Requests and Tokens read a tally Close returned.
func (t *Tally) Requests() float64 { return t.requests.load() }
func (t *Tally) Tokens() float64   { return t.tokens.load() }

// Seen says whether anything was added to the tally.
func (t *Tally) Seen() bool { return t.seen.Load() }

func (t *Tally) add(requests, tokens float64, seen *atomic.Int64) {
	t.requests.add(requests)
	t.tokens.add(tokens)
	if !t.seen.Load() && t.seen.CompareAndSwap(false, true) {
		seen.Add(1)
	}
}

type atomicFloat struct{ bits atomic.Uint64 }

func (a *atomicFloat) load() float64 { return math.Float64frombits(a.bits.Load()) }

func (a *atomicFloat) add(d float64) {
	for {
		old := a.bits.Load()
		if a.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// TryAdd adds requests and tokens to each of keys' tallies if an interval
// is open, t is before its end and it has a tally for every key; else it
// adds nothing and returns false, and the caller takes its lock, moves
// time on and calls AddLocked. It takes no lock of the owner's.
func (c *Counts[K]) TryAdd(t time.Time, keys []K, requests, tokens float64) bool {
	for {
		w := c.cur.Load()
		if w == nil || !t.Before(w.end) {
			return false
		}
		m := *w.tallies.Load()
		var found [2]*Tally
		tl := found[:0]
		for _, k := range keys {
			x := m[k]
			if x == nil {
				return false
			}
			tl = append(tl, x)
		}
		w.gate.RLock()
		if c.cur.Load() != w {
			// Closed between the load and the gate: its tallies were
			// read already; count in the interval open now.
			w.gate.RUnlock()
			continue
		}
		for _, x := range tl {
			x.add(requests, tokens, &w.seen)
		}
		w.gate.RUnlock()
		return true
	}
}

// Open opens an interval that ends at end, with tallies made ahead for
// carry (keys likely to come, so that they take TryAdd's path). Any open
// interval must have been closed. Owner's lock held.
func (c *Counts[K]) Open(end time.Time, carry []K) {
	m := make(map[K]*Tally, len(carry))
	for _, k := range carry {
		m[k] = &Tally{}
	}
	w := &window[K]{end: end}
	w.tallies.Store(&m)
	c.cur.Store(w)
}

// Close closes the open interval and returns its tallies, complete: the
// adds that began before it are done, later ones take the slow path and
// wait for the owner's lock. Nil if none was open. Owner's lock held.
func (c *Counts[K]) Close() map[K]*Tally {
	w := c.cur.Swap(nil)
	if w == nil {
		return nil
	}
	w.gate.Lock()
	w.gate.Unlock() //nolint:staticcheck // an empty section: waiting out the adds is the point
	return *w.tallies.Load()
}

// Has says whether the open interval has a tally for key (seen or made
// ahead). Owner's lock held.
func (c *Counts[K]) Has(key K) bool {
	w := c.cur.Load()
	return w != nil && (*w.tallies.Load())[key] != nil
}

// Seen is how many of the open interval's tallies were added to (as many
// as keys a plain map of the interval's arrivals would hold). Owner's lock
// held.
func (c *Counts[K]) Seen() int {
	w := c.cur.Load()
	if w == nil {
		return 0
	}
	return int(w.seen.Load())
}

// AddLocked adds to key's tally in the open interval, making it if need
// be. There must be an open interval. Owner's lock held: no Close can
// run, so the add needs no gate.
func (c *Counts[K]) AddLocked(key K, requests, tokens float64) {
	w := c.cur.Load()
	m := *w.tallies.Load()
	t := m[key]
	if t == nil {
		t = &Tally{}
		next := make(map[K]*Tally, len(m)+1)
		for k, v := range m {
			next[k] = v
		}
		next[key] = t
		w.tallies.Store(&next)
	}
	t.add(requests, tokens, &w.seen)
}
