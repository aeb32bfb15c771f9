package openai

import (
	"bytes"
	"encoding/json"
	"unicode"
	"unicode/utf8"
)

// The prefix keys read the body in place: a prompt's first bytes are all
// they hash, so decoding every message into structs (33 MB and 0.2-0.35 s
// for 250k messages) paid for what they never use. These helpers walk a
// body already known to be valid JSON (json.Valid) with jsonscan.go's
// helpers, without allocating.

// prefixMember is one "key": value of an object: the spans of its quoted key
// and of its value.
type prefixMember struct{ k0, k1, v0, v1 int }

// nextMember reads the member at or after i inside an object (i just past
// '{' or a member). ok is false at the object's closing brace; end is then
// just past it.
func nextMember(b []byte, i int) (m prefixMember, end int, ok bool) {
	i = skipSpace(b, i)
	if b[i] == ',' {
		i = skipSpace(b, i+1)
	}
	if b[i] == '}' {
		return m, i + 1, false
	}
	m.k0 = i
	m.k1 = skipString(b, i)
	i = skipSpace(b, m.k1)
	m.v0 = skipSpace(b, i+1) // past ':'
	m.v1 = skipValue(b, m.v0)
	return m, m.v1, true
}

// nextElem reads the element at or after i inside an array (i just past
// '[' or an element): its span, or ok false at ']' with end past it.
func nextElem(b []byte, i int) (v0, v1 int, ok bool) {
	i = skipSpace(b, i)
	if b[i] == ',' {
		i = skipSpace(b, i+1)
	}
	if b[i] == ']' {
		return i + 1, i + 1, false
	}
	return i, skipValue(b, i), true
}

// keyIs reports whether the quoted key q selects the struct field named
// name (lower case ASCII) in encoding/json: equal after its case folding,
// escapes decoded ("\u0052ole", "ROLE" and "rolE" all select Role).
func keyIs(q []byte, name string) bool {
	raw := q[1 : len(q)-1]
	plain := true
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		if len(raw) != len(name) {
			return false
		}
		for i, c := range raw {
			if c|0x20 != name[i] || c < 'A' { // name is lower-case letters only
				return false
			}
		}
		return true
	}
	return bytes.Equal(foldName(decodeKey(raw)), foldName(name))
}

// foldName is encoding/json's key folding: ASCII upper-cased, other runes
// mapped to the smallest rune of their fold set (so 'ſ' matches 's').
func foldName(s string) []byte {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r < utf8.RuneSelf {
			c := byte(r)
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			continue
		}
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		out = utf8.AppendRune(out, r)
	}
	return out
}

// rawStringValue is the value a JSON string span decodes to, read in place
// when it has no escapes and is valid UTF-8 (what decoding would change).
func rawStringValue(v []byte) (s []byte, ok bool) {
	raw := v[1 : len(v)-1]
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return raw, true
	}
	var d string
	if json.Unmarshal(v, &d) != nil {
		return nil, false
	}
	return []byte(d), true
}
