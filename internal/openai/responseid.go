package openai

import "bytes"

// MaxScannedID bounds the id an IDScan keeps: longer is no id an engine
// makes (vLLM's and OpenAI's are under 100 bytes), and is not kept.
const MaxScannedID = 256

// IDScan finds the top-level "id" string of a JSON object whose bytes
// pass through Write in pieces of any size, wherever the member is: for a
// Responses API answer too large to hold whole, which is relayed as it
// comes. It holds its state and at most MaxScannedID bytes of the id, never
// the answer, and reads each byte once (the bytes inside strings that are
// neither a top-level key nor the id's value are skipped by IndexAny).
// It reads what ReadResponse reads of a whole answer, except that an id
// written with escapes or longer than MaxScannedID is not kept. The zero
// value is ready; for input that is not JSON its answer means nothing,
// but its work and memory stay bounded.
type IDScan struct {
	depth int
	// str: inside a string; esc: just after its backslash.
	str, esc bool
	// wantKey: the next string at depth 1 is a key; key: reading one,
	// keyLen bytes so far, the first two in keyHead, keyEsc if escaped.
	wantKey, key, keyEsc bool
	keyLen               int
	keyHead              [2]byte
	// idKey: the last key read is "id"; idValue: its value is next (the
	// colon came); capture: reading the value, capBad if not kept.
	idKey, idValue, capture, capBad bool
	val                             []byte
	id                              string
}

// ID is the last top-level "id" string read whole so far ("" if none).
func (s *IDScan) ID() string { return s.id }

// Write reads p; it never fails.
func (s *IDScan) Write(p []byte) (int, error) {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if s.str {
			if s.esc {
				s.esc = false
				continue
			}
			if !s.key && !s.capture {
				// A string nothing is read from: on to its next quote or
				// backslash.
				j := bytes.IndexAny(p[i:], `"\`)
				if j < 0 {
					return len(p), nil
				}
				i += j
				c = p[i]
			}
			switch c {
			case '\\':
				s.esc = true
				s.keyEsc = s.keyEsc || s.key
				s.capBad = s.capBad || s.capture
			case '"':
				s.str = false
				s.endString()
			default:
				s.inString(c)
			}
			continue
		}
		switch c {
		case ' ', '\t', '\r', '\n':
		case '"':
			s.str = true
			switch {
			case s.depth == 1 && s.wantKey:
				s.wantKey, s.key, s.keyEsc, s.keyLen = false, true, false, 0
			case s.depth == 1 && s.idValue:
				s.idValue, s.capture, s.capBad, s.val = false, true, false, s.val[:0]
			}
		case ':':
			if s.depth == 1 && s.idKey {
				s.idKey, s.idValue = false, true
			}
		case ',':
			if s.depth == 1 {
				s.wantKey, s.idKey, s.idValue = true, false, false
			}
		case '{', '[':
			s.depth++
			s.idValue = false
			if s.depth == 1 {
				s.wantKey = c == '{'
			}
		case '}', ']':
			s.depth--
		default: // a number, true, false, null
			if s.depth == 1 {
				s.idValue = false
			}
		}
	}
	return len(p), nil
}

// inString reads a byte of a key or of the id's value.
func (s *IDScan) inString(c byte) {
	if s.key {
		if s.keyLen < len(s.keyHead) {
			s.keyHead[s.keyLen] = c
		}
		s.keyLen++
		return
	}
	if len(s.val) < MaxScannedID {
		s.val = append(s.val, c)
	} else {
		s.capBad = true
	}
}

// endString ends a key or the id's value.
func (s *IDScan) endString() {
	switch {
	case s.key:
		s.key = false
		s.idKey = !s.keyEsc && s.keyLen == 2 && s.keyHead == [2]byte{'i', 'd'}
	case s.capture:
		s.capture = false
		if !s.capBad {
			s.id = string(s.val)
		}
	}
}
