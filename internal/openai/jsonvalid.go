package openai

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// validJSON reports whether b is exactly one JSON value with optional
// surrounding whitespace, accepting what encoding/json's Valid accepts
// (FuzzValidJSON checks the two agree): the same grammar, the same
// nesting limit, and, like it, no check of UTF-8 inside strings. It exists
// because it runs on every request body and is several times faster: a
// string is skipped a run of plain bytes at a time, with no per-byte state
// function call.
func validJSON(b []byte) bool { return scanJSON(b, nil) }

// scanNotes is what a scan notes besides its validity, from the keys and
// values it meets anyway: for CheckAnswer whether it is an error object
// (ErrorObject's rule), sparing an answer a second pass; for ParseRequest
// where its top-level members are, sparing a request a second walk
// (topMembers), and where its first byte that is not UTF-8 is, sparing it
// a pass of utf8.Valid (a byte outside a string that is not ASCII fails
// the grammar, so only strings need the check).
type scanNotes struct {
	watchError  bool // note errorObject
	errorObject bool
	members     *topMembers // nil: not noted
	utf8        bool        // note badUTF8
	// badUTF8 is the offset, plus one, of the first byte of a string that
	// is not UTF-8 (utf8.DecodeRune's RuneError of width 1); 0: none.
	badUTF8 int
}

// topMembers are the spans of an object's top-level members, in order:
// the raw key (between its quotes) and the value. over: there were more
// than it holds, and none of them is to be read.
type topMembers struct {
	n    int
	over bool
	m    [16]memberSpan
}

type memberSpan struct{ key0, key1, val0, val1 int }

// valueEnd notes that the value of the last member noted ends at i.
func (t *topMembers) valueEnd(i int) {
	if !t.over {
		t.m[t.n-1].val1 = i
	}
}

// scanJSON is validJSON, noting what notes asks for (nil: nothing).
func scanJSON(b []byte, notes *scanNotes) bool {
	i := skipSpace(b, 0)
	// containers is a stack of open containers: true for an object.
	var stackBuf [64]bool
	containers := stackBuf[:0]
	var ok bool
	utf := notes != nil && notes.utf8 // strings are checked by validStringUTF8
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '{':
			if len(containers) >= maxNestingDepth {
				return false
			}
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			containers = append(containers, true)
			if i, ok = memberKey(b, i, len(containers) == 1, notes); !ok {
				return false
			}
			continue
		case c == '[':
			if len(containers) >= maxNestingDepth {
				return false
			}
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == ']' {
				i++
				break
			}
			containers = append(containers, false)
			continue
		case c == '"':
			if utf {
				i, ok = validStringUTF8(b, i, notes)
			} else {
				i, ok = validString(b, i)
			}
			if !ok {
				return false
			}
		case c == '-' || (c >= '0' && c <= '9'):
			if i, ok = validNumber(b, i); !ok {
				return false
			}
		case c == 't' || c == 'f' || c == 'n':
			if i, ok = literalEnd(b, i); !ok {
				return false
			}
		default:
			return false
		}
		// A value ended at i: close containers, or go on to the next value.
		for {
			if len(containers) == 1 && containers[0] && notes != nil && notes.members != nil {
				notes.members.valueEnd(i) // a top-level member's value
			}
			i = skipSpace(b, i)
			if len(containers) == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			obj := containers[len(containers)-1]
			if b[i] == ',' {
				i = skipSpace(b, i+1)
				if obj {
					if i, ok = memberKey(b, i, len(containers) == 1, notes); !ok {
						return false
					}
				}
				break
			}
			if (obj && b[i] == '}') || (!obj && b[i] == ']') {
				containers = containers[:len(containers)-1]
				i++
				continue
			}
			return false
		}
	}
}

// errorMember reports whether the top-level member whose key starts at
// b[k] (its opening quote, the key already checked) and whose value starts
// at b[v] makes an error object: "error" not null, or "object": "error".
// Keys and values are matched as written, as ErrorObject matches them; a
// string that starts with `"error"` ends there (its last quote follows an
// 'r', not a backslash), and a value that starts with null is null or not
// valid, which fails the whole scan.
func errorMember(b []byte, k, v int) bool {
	switch {
	case hasLiteral(b, k, `"error"`):
		return !hasLiteral(b, v, "null")
	case hasLiteral(b, k, `"object"`):
		return hasLiteral(b, v, `"error"`)
	}
	return false
}

// maxNestingDepth is encoding/json's limit on nested containers.
const maxNestingDepth = 10000

// memberKey reads `"key" :` at b[i] and returns the index of the value
// after the colon and any whitespace. For a key of the top-level object
// (top), it notes what notes asks for (nil: nothing).
func memberKey(b []byte, i int, top bool, notes *scanNotes) (int, bool) {
	k := i
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	var ok bool
	if notes != nil && notes.utf8 {
		i, ok = validStringUTF8(b, i, notes)
	} else {
		i, ok = validString(b, i)
	}
	if !ok {
		return i, false
	}
	keyEnd := i
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return i, false
	}
	i = skipSpace(b, i+1)
	if top && notes != nil {
		if notes.watchError && errorMember(b, k, i) {
			notes.errorObject = true
		}
		if t := notes.members; t != nil && !t.over {
			if t.n == len(t.m) {
				t.over = true
			} else {
				t.m[t.n] = memberSpan{key0: k + 1, key1: keyEnd - 1, val0: i}
				t.n++
			}
		}
	}
	return i, true
}

// validString checks the string starting at b[i] (a '"') and returns the
// index past its closing quote.
func validString(b []byte, i int) (int, bool) {
	i++
	for i < len(b) {
		if i = skipPlain(b, i, 0); i >= len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			if i+1 >= len(b) {
				return i, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return i, false
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return i, false
					}
				}
				i += 6
			default:
				return i, false
			}
		case c < 0x20:
			return i, false
		default:
			i++
		}
	}
	return i, false
}

// validStringUTF8 is validString noting in n the first byte that is not
// UTF-8. A copy rather than a flag: validString runs on every backend
// answer (ValidObject, CheckAnswer), and a flag in its loop cost it 6-10%
// more instructions (callgrind); the escapes are inline in both, as a call
// per escape cost more still.
func validStringUTF8(b []byte, i int, n *scanNotes) (int, bool) {
	i++
	for i < len(b) {
		if i = skipPlain(b, i, highs); i >= len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			if i+1 >= len(b) {
				return i, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return i, false
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return i, false
					}
				}
				i += 6
			default:
				return i, false
			}
		case c < 0x20:
			return i, false
		case c >= utf8.RuneSelf:
			i = n.checkUTF8(b, i)
		default:
			i++
		}
	}
	return i, false
}

// checkUTF8 checks the run of bytes that are not ASCII starting at b[i],
// inside a string, and returns the index past it. The run ends at an
// ASCII byte or the body's end, where no rune can continue, so it is UTF-8
// exactly when the body is there; the first bad byte is noted.
func (n *scanNotes) checkUTF8(b []byte, i int) int {
	j := i
	for j+8 <= len(b) && binary.LittleEndian.Uint64(b[j:])&highs == highs {
		j += 8
	}
	for j < len(b) && b[j] >= utf8.RuneSelf {
		j++
	}
	if n.badUTF8 == 0 && !utf8.Valid(b[i:j]) {
		for k := i; k < j; {
			r, size := utf8.DecodeRune(b[k:j])
			if r == utf8.RuneError && size == 1 {
				n.badUTF8 = k + 1
				break
			}
			k += size
		}
	}
	return j
}

const ones, highs = 0x0101010101010101, 0x8080808080808080

// skipPlain returns the index of the first byte of b[i:] a string cannot
// contain as is ('"', '\\', a control byte), or that is not ASCII when
// stopHigh is highs (0: not; a constant, which inlining folds away), or of
// the tail shorter than a word: prompts are long runs of plain text, and
// testing a word at a time is several times faster than a byte.
func skipPlain(b []byte, i int, stopHigh uint64) int {
	for i+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:])
		q, s := x^(ones*'"'), x^(ones*'\\')
		// A byte's high bit is set in m if the byte is below 0x20, '"' or
		// '\\' (the classic "has zero byte" test): exact for the lowest
		// such byte, though a borrow may also mark bytes after it; and if
		// it is not ASCII, when stopHigh asks.
		if m := ((x-ones*0x20)&^x | (q-ones)&^q | (s-ones)&^s | x&stopHigh) & highs; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
		i += 8
	}
	return i
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// validNumber checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at
// b[i] and returns the index past it.
func validNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return i, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return i, false
		}
		i = j
	}
	return i, true
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// literalEnd checks the true, false or null starting at b[i] (its first
// letter already seen) and returns the index past it. Small enough to be
// inlined: validJSON pays no call for it.
func literalEnd(b []byte, i int) (int, bool) {
	lit := "null"
	switch b[i] {
	case 't':
		lit = "true"
	case 'f':
		lit = "false"
	}
	return i + len(lit), hasLiteral(b, i, lit)
}

func hasLiteral(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

// ValidObject reports whether b is exactly one JSON object with optional
// surrounding whitespace: what a completion, an embedding answer and every
// data line of a stream must be. The gateway checks backend answers with
// it before passing them on.
func ValidObject(b []byte) bool {
	i := skipSpace(b, 0)
	return i < len(b) && b[i] == '{' && validJSON(b)
}

// CheckAnswer is ValidObject and ErrorObject in one pass over b: valid
// when b is exactly one JSON object, and then errorObject when it is an
// error rather than an answer. A non-streamed answer is checked with it:
// ErrorObject's own search for the word costs more than this scan's look
// at each top-level key.
func CheckAnswer(b []byte) (valid, errorObject bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false, false
	}
	notes := scanNotes{watchError: true}
	if !scanJSON(b, &notes) {
		return false, false
	}
	return true, notes.errorObject
}

// ObjectPrefix reports whether b, the start of a longer answer, opens a
// JSON object: the check the gateway can afford for an answer too large
// to hold whole.
func ObjectPrefix(b []byte) bool {
	i := skipSpace(b, 0)
	return i < len(b) && b[i] == '{'
}
