package cache

import (
	"bytes"
	"encoding/json"
	"hash"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// canonicalizer writes the normalised form of a JSON request body (see
// Key) without building a tree of Go values. The tree (a map[string]any
// per object, an []any per array, a json.Number per number) allocated 35
// to 66 times the body and about a second of CPU per MB of small values
// (2.4 s for a 7 MB body of nested arrays through the binary); here
// memory is the body's size again (out) plus a 20-byte record per object
// member, and time is linear but for sorting the keys of objects sent
// out of order.
//
// The bytes are exactly what encoding/json wrote from the tree (sorted
// object keys, the last of duplicate keys, strings decoded and encoded
// again, numbers by canonicalNumber, a final newline), so keys do not
// change: FuzzCanonicalMatchesTree holds it to the old code.
//
// Values are written into out in the body's order. An object whose keys
// are already strictly increasing is right as written; any other is
// recorded as a reorder (its members' spans of out in sorted order, the
// last of each key kept), and emit writes it in that order when it reaches
// its place. Moving bytes instead would copy a reordered object once for
// every reordered object around it: quadratic in the nesting depth.
type canonicalizer struct {
	in       []byte
	i        int
	out      []byte
	keys     []byte    // decoded keys of the open objects' members
	members  []member  // members of the open objects, innermost last
	reorders []reorder // objects written out of order
	sorted   []span    // the reorders' members, in their order
	scratch  []byte    // a string's decoded bytes
	punct    [3]byte   // '{', ',', '}' for w.Write, without an allocation each
	w        hash.Hash
}

// member is one "key":value of an object as written in out, with its
// decoded key in keys.
type member struct {
	keyStart, keyEnd int32
	span
	valStart int32
}

// span is a range of out. Offsets are int32 (a body over 2 GiB is not
// keyed) to keep a member's record small: an object of k short members
// holds k of them while it is open.
type span struct{ start, end int32 }

// reorder is an object of out, braces included, to be written with the
// members sorted[lo:hi].
type reorder struct {
	span
	lo, hi int32
}

func (c *canonicalizer) key(m member) []byte { return c.keys[m.keyStart:m.keyEnd] }

// maxCanonicalBody is the largest body keyed (offsets are int32).
const maxCanonicalBody = 1<<31 - 1

// skipSpace moves past JSON whitespace.
func (c *canonicalizer) skipSpace() {
	for c.i < len(c.in) {
		switch c.in[c.i] {
		case ' ', '\t', '\r', '\n':
			c.i++
		default:
			return
		}
	}
}

// value writes the value at c.i. The body is valid JSON (checked first),
// so the grammar is not checked again here.
func (c *canonicalizer) value() {
	c.skipSpace()
	switch b := c.in[c.i]; {
	case b == '{':
		c.object()
	case b == '[':
		c.i++
		c.out = append(c.out, '[')
		c.skipSpace()
		if c.in[c.i] == ']' {
			c.i++
			c.out = append(c.out, ']')
			return
		}
		for {
			c.value()
			c.skipSpace()
			if c.in[c.i] == ']' {
				c.i++
				c.out = append(c.out, ']')
				return
			}
			c.i++ // ','
			c.out = append(c.out, ',')
		}
	case b == '"':
		if raw, ok := c.plainString(); ok {
			c.out = appendString(c.out, raw)
			return
		}
		c.scratch = c.decodeString(c.scratch[:0])
		c.out = appendString(c.out, c.scratch)
	case b == 't':
		c.i += 4
		c.out = append(c.out, "true"...)
	case b == 'f':
		c.i += 5
		c.out = append(c.out, "false"...)
	case b == 'n':
		c.i += 4
		c.out = append(c.out, "null"...)
	default:
		start := c.i
		for c.i < len(c.in) && isNumberByte(c.in[c.i]) {
			c.i++
		}
		c.out = append(c.out, canonicalNumber(string(c.in[start:c.i]))...)
	}
}

// plainString is the string at c.i, moving past it, when it is ASCII
// without escapes: its decoded bytes are its bytes in the body.
func (c *canonicalizer) plainString() ([]byte, bool) {
	for j := c.i + 1; j < len(c.in); j++ {
		switch b := c.in[j]; {
		case b == '"':
			raw := c.in[c.i+1 : j]
			c.i = j + 1
			return raw, true
		case b == '\\' || b >= utf8.RuneSelf:
			return nil, false
		}
	}
	return nil, false
}

func isNumberByte(b byte) bool {
	return b >= '0' && b <= '9' || b == '-' || b == '+' || b == '.' || b == 'e' || b == 'E'
}

// object writes the object at c.i: in place when its keys increase,
// recorded as a reorder otherwise.
func (c *canonicalizer) object() {
	start := int32(len(c.out))
	first := c.objectMembers()
	ms := c.members[first:]
	defer func() { c.members = c.members[:len(c.members)-len(ms)] }()
	if len(ms) == 0 {
		return
	}
	// Each member's key is compared in this object only.
	defer func() { c.keys = c.keys[:ms[0].keyStart] }()
	inOrder := true
	for j := 1; j < len(ms) && inOrder; j++ {
		inOrder = bytes.Compare(c.key(ms[j-1]), c.key(ms[j])) < 0
	}
	if inOrder {
		return
	}
	lo := int32(len(c.sorted))
	for _, m := range c.sortMembers(ms) {
		c.sorted = append(c.sorted, m.span)
	}
	c.reorders = append(c.reorders, reorder{span{start, int32(len(c.out))}, lo, int32(len(c.sorted))})
}

// objectMembers writes the object at c.i as it comes and appends its
// members to c.members, returning where they start.
func (c *canonicalizer) objectMembers() int {
	first := len(c.members)
	c.i++
	c.out = append(c.out, '{')
	c.skipSpace()
	for c.in[c.i] != '}' {
		if len(c.members) > first {
			c.out = append(c.out, ',')
		}
		m := member{keyStart: int32(len(c.keys)), span: span{start: int32(len(c.out))}}
		c.keys = c.decodeString(c.keys)
		m.keyEnd = int32(len(c.keys))
		c.out = appendString(c.out, c.key(m))
		c.skipSpace()
		c.i++ // ':'
		c.out = append(c.out, ':')
		m.valStart = int32(len(c.out))
		c.value()
		m.end = int32(len(c.out))
		c.members = append(c.members, m)
		c.skipSpace()
		if c.in[c.i] == ',' {
			c.i++
			c.skipSpace()
		}
	}
	c.i++
	c.out = append(c.out, '}')
	return first
}

// sortMembers sorts ms in place by key, and returns them with only the
// last of equal keys kept (as a map decode keeps it).
func (c *canonicalizer) sortMembers(ms []member) []member {
	sorted := ms
	byKey := func(a, b member) int {
		if k := bytes.Compare(c.key(a), c.key(b)); k != 0 {
			return k
		}
		return int(a.start - b.start) // equal keys in the order sent
	}
	// A key repeated in order ("a":1,"a":2,...) needs no sort, only
	// the last of each kept.
	if !slices.IsSortedFunc(sorted, byKey) {
		slices.SortFunc(sorted, byKey)
	}
	kept := sorted[:0]
	for j, m := range sorted {
		if j+1 < len(sorted) && bytes.Equal(c.key(m), c.key(sorted[j+1])) {
			continue
		}
		kept = append(kept, m)
	}
	return kept
}

// emit writes out[a:b] to the hash, each reordered object in it in its
// sorted order.
func (c *canonicalizer) emit(a, b int32) {
	for a < b {
		j, _ := slices.BinarySearchFunc(c.reorders, a, func(r reorder, a int32) int { return int(r.start - a) })
		if j == len(c.reorders) || c.reorders[j].start >= b {
			c.w.Write(c.out[a:b])
			return
		}
		r := c.reorders[j]
		c.w.Write(c.out[a:r.start])
		c.emitObject(c.sorted[r.lo:r.hi])
		a = r.end
	}
}

func (c *canonicalizer) emitObject(ms []span) {
	c.w.Write(c.punct[0:1])
	for j, m := range ms {
		if j > 0 {
			c.w.Write(c.punct[1:2])
		}
		c.emit(m.start, m.end)
	}
	c.w.Write(c.punct[2:3])
}

// decodeString appends the decoded string at c.i to dst as
// encoding/json decodes it: escapes resolved, an invalid surrogate or
// byte of invalid UTF-8 each one U+FFFD.
func (c *canonicalizer) decodeString(dst []byte) []byte {
	in := c.in
	i := c.i + 1
	for {
		b := in[i]
		switch {
		case b == '"':
			c.i = i + 1
			return dst
		case b == '\\':
			i++
			switch in[i] {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(in[i+1:])
				i += 4
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if i+6 < len(in) && in[i+1] == '\\' && in[i+2] == 'u' {
						r2 = hex4(in[i+3:])
					}
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						i += 6
						dst = utf8.AppendRune(dst, d)
						break
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
			default: // '"', '\\', '/'
				dst = append(dst, in[i])
			}
			i++
		case b < utf8.RuneSelf:
			dst = append(dst, b)
			i++
		default:
			r, size := utf8.DecodeRune(in[i:])
			dst = utf8.AppendRune(dst, r)
			i += size
		}
	}
}

func hex4(b []byte) rune {
	v, err := strconv.ParseUint(string(b[:4]), 16, 32)
	if err != nil {
		return -1
	}
	return rune(v)
}

// appendString appends s (valid UTF-8) as encoding/json's Encoder with
// SetEscapeHTML(false) writes a string.
func appendString(dst, s []byte) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			start = i + size
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// canonicalNumber is a number as the key writes it: 1, 1.0 and 1e0 all
// 1; -0 and -0.0 0; an integer without fraction or exponent keeps every
// digit (seeds can exceed float64 precision); a value out of float64's
// range keeps its literal.
func canonicalNumber(s string) string {
	if !containsAny(s, ".eE") {
		if s == "-0" {
			return "0"
		}
		return s
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	if f == 0 {
		f = 0 // -0.0
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func containsAny(s, chars string) bool {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return true
			}
		}
	}
	return false
}

// canonicalDigest is Digest's work on a body that is one valid JSON
// object: the hash of its normalised form without ignoredFields, its
// model, and whether its sampling is deterministic.
func canonicalDigest(body []byte, w hash.Hash) (model string, deterministicReq bool) {
	c := &canonicalizer{in: body, w: w, out: make([]byte, 0, len(body)+len(body)/8), punct: [3]byte{'{', ',', '}'}}
	c.skipSpace()
	first := c.objectMembers()
	ms := c.sortMembers(c.members[first:])
	slices.SortFunc(c.reorders, func(a, b reorder) int { return int(a.start - b.start) })
	model, deterministicReq = c.topLevel(ms)
	kept := make([]span, 0, len(ms))
	for _, m := range ms {
		if !slices.Contains(ignoredFields, string(c.key(m))) {
			kept = append(kept, m.span)
		}
	}
	c.emitObject(kept)
	c.w.Write([]byte("\n"))
	return model, deterministicReq
}

// topLevel is what Digest reads from the top-level object: its model and
// whether its sampling is deterministic (see deterministic), from the
// last of duplicate keys (ms is deduplicated), as the map decode read
// them. The values are read in their normalised form, which parses to
// the same float64 as the number sent.
func (c *canonicalizer) topLevel(ms []member) (model string, deterministicReq bool) {
	val := func(name string) ([]byte, bool) {
		for _, m := range ms {
			if string(c.key(m)) == name {
				return c.out[m.valStart:m.end], true
			}
		}
		return nil, false
	}
	if v, ok := val("model"); ok && v[0] == '"' {
		_ = json.Unmarshal(v, &model)
	}
	num := func(v []byte) (float64, bool) {
		if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
			return 0, false
		}
		f, err := strconv.ParseFloat(string(v), 64)
		return f, err == nil
	}
	if v, ok := val("n"); ok && string(v) != "null" {
		if f, ok := num(v); !ok || f != 1 {
			return model, false
		}
	}
	if v, ok := val("temperature"); ok {
		if f, ok := num(v); ok && f == 0 {
			return model, true
		}
	}
	v, ok := val("seed")
	return model, ok && string(v) != "null"
}
