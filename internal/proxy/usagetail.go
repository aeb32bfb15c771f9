package proxy

import (
	"bytes"
	"strings"
	"sync"

	"github.com/sluice-gw/sluice/internal/openai"
)

// usageTail keeps, of a relayed stream's last tailSize bytes, what
// findUsage reads in them: from the last openai.UsageKey to the end, or
// nothing when they hold none. FindUsage and FindEndpointUsage read
// only the last key's object, forward from the key, so they answer from
// it as from the whole window (tail). A stream whose events carry no
// usage key holds no bytes for it and copies none; the window held 4 KiB
// a stream for its life and, once full, moved 4 KiB for every event
// relayed. (A Responses answer's FindResponseUsage may go back to an
// earlier key: relayRest keeps the window.)
type usageTail struct {
	buf []byte // from the last key on; empty: no key in the window
	// last holds the stream's last len(UsageKey)-1 bytes (nlast of
	// them), for a key cut across writes: bytes relayed raw, or after
	// [DONE], are not whole events.
	last  [len(openai.UsageKey) - 1]byte
	nlast int
}

func (t *usageTail) reset() { t.buf, t.nlast = t.buf[:0], 0 }

func (t *usageTail) write(p []byte) {
	if len(p) == 0 {
		return
	}
	switch i := lastKey(p); {
	case i >= 0:
		t.keep(nil, p[i:])
	default:
		if o := t.cutKey(p); o >= 0 {
			t.keep(t.last[o:t.nlast], p)
		} else if len(t.buf) > 0 {
			t.extend(p)
		}
	}
	t.remember(p)
}

// keep sets buf to head+p, the bytes from a key on, or empties it when
// they are longer than the window: the key is not in the last tailSize
// bytes, where findUsage on the window would not have seen it.
func (t *usageTail) keep(head, p []byte) {
	if len(head)+len(p) > tailSize {
		t.buf = t.buf[:0]
		return
	}
	t.buf = append(append(t.buf[:0], head...), p...)
}

// extend adds p after the key kept, or lets the key go once it leaves
// the window.
func (t *usageTail) extend(p []byte) {
	if len(t.buf)+len(p) > tailSize {
		t.buf = t.buf[:0]
		return
	}
	t.buf = append(t.buf, p...)
}

// cutKey returns where in last a key starts that ends in p, or -1: a
// suffix of the stream's bytes before p that is a prefix of the key, and p
// starting with the rest of it. (At most one can match: the key's first
// byte, '"', is in it once more, as its seventh, followed by ':'.)
func (t *usageTail) cutKey(p []byte) int {
	if t.nlast == 0 || strings.IndexByte(openai.UsageKey[1:], p[0]) < 0 {
		return -1 // most writes start "data: ", whose 'd' cannot go on with a key
	}
	for n := t.nlast; n >= 1; n-- {
		if string(t.last[t.nlast-n:t.nlast]) == openai.UsageKey[:n] && bytes.HasPrefix(p, []byte(openai.UsageKey[n:])) {
			return t.nlast - n
		}
	}
	return -1
}

// lastKey returns where the last key in p starts, or -1. It looks for
// the key's 'g' (vectorised IndexByte), which a chat chunk's member names
// hold only in "usage" and "logprobs", where '"' and ':' come every few
// bytes: per event, a byte-by-byte backward scan (openai's lastUsageKey,
// for a tail read once) cost 7 times the window's copy, and bytes.Index,
// which hops from '"' to '"', 2-3 times (BenchmarkStreamUsageKeeping).
func lastKey(p []byte) int {
	const key, g = openai.UsageKey, 4  // key[g] == 'g'
	end := len(p) - (len(key) - 1 - g) // a 'g' at or past it has no room for the key's end
	last := -1
	for from := g; from < end; {
		i := bytes.IndexByte(p[from:end], 'g')
		if i < 0 {
			break
		}
		s := from + i - g
		if string(p[s:s+len(key)]) == key {
			last = s
			from = s + len(key) + g
		} else {
			from += i + 1
		}
	}
	return last
}

// remember keeps the last bytes of the stream after p.
func (t *usageTail) remember(p []byte) {
	if len(p) >= len(t.last) {
		t.nlast = copy(t.last[:], p[len(p)-len(t.last):])
		return
	}
	if over := t.nlast + len(p) - len(t.last); over > 0 {
		t.nlast = copy(t.last[:], t.last[over:t.nlast])
	}
	t.nlast += copy(t.last[t.nlast:], p)
}

// streamBufs is what a relayed stream borrows for its life: the small
// read buffer it waits on (readBuf) and its usageTail.
type streamBufs struct {
	small [smallRead]byte
	usage usageTail
	first *firstSend // the stream's first write (deepcall.go)
}

var streamBufsPool = sync.Pool{New: func() any { return &streamBufs{first: newFirstSend()} }}
