package openai

import (
	"bytes"
	"encoding/json"
	"strings"
)

// members walks the members of one JSON object, in order, without decoding
// their values. It assumes the object is valid JSON (the caller checked it
// with json.Valid), so it only has to find where each key and value ends;
// that makes a pass over a large body cost little more than a memchr per
// string.
type members struct {
	b []byte
	i int
}

// newMembers starts at obj, which must begin with '{' (after whitespace).
func newMembers(obj []byte) members {
	i := skipSpace(obj, 0)
	return members{b: obj, i: i + 1}
}

// next returns the next member's raw key (between its quotes, escapes not
// decoded) and its raw value; ok is false after the last member.
func (m *members) next() (key, val []byte, ok bool) {
	b := m.b
	i := skipSpace(b, m.i)
	if i >= len(b) || b[i] != '"' {
		return nil, nil, false // '}'
	}
	end := skipString(b, i)
	key = b[i+1 : end-1]
	i = skipSpace(b, end)
	i = skipSpace(b, i+1) // ':'
	vend := skipValue(b, i)
	val = b[i:vend]
	i = skipSpace(b, vend)
	if i < len(b) && b[i] == ',' {
		i++
	}
	m.i = i
	return key, val, true
}

// decodeKey is the key as a JSON decoder reads it: escapes such as \u0065
// resolved, as Python's json module resolves them.
func decodeKey(raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw)
	}
	var s string
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	if json.Unmarshal(quoted, &s) != nil {
		return string(raw) // cannot happen for a key of a valid document
	}
	return s
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string that starts at b[i]
// (a '"'). A quote ends the string when an even number of backslashes
// precede it.
func skipString(b []byte, i int) int {
	j := i + 1
	for {
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			return len(b)
		}
		j += q
		n := 0
		for k := j - 1; k > i && b[k] == '\\'; k-- {
			n++
		}
		j++
		if n%2 == 0 {
			return j
		}
	}
}

// skipValue returns the index just past the value that starts at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // number, true, false, null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// CheckKeys refuses a JSON object (already known to be valid) in which one
// of fields appears twice, or a key equals one of them only
// case-insensitively: the rule ParseRequest applies to a request, for other
// objects the gateway reads with encoding/json (whose key matching is
// case-insensitive). The error is an *Error naming the key.
func CheckKeys(obj []byte, fields ...string) error {
	var seen uint64
	m := newMembers(obj)
	for {
		rawKey, _, ok := m.next()
		if !ok {
			return nil
		}
		key := decodeKey(rawKey)
		for i, f := range fields {
			switch {
			case key == f:
				if seen&(1<<i) != 0 {
					return duplicateKey(f)
				}
				seen |= 1 << i
			case strings.EqualFold(key, f):
				return ambiguousKey(key, f)
			}
		}
	}
}
