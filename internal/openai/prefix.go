package openai

import (
	"bytes"
	"encoding/json"
)

// prefixFields is the part of a request PrefixKey reads: chat messages
// (content kept raw, decoded only as far as maxChars reaches) or a
// completions prompt.
type prefixFields struct {
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Prompt json.RawMessage `json:"prompt"`
}

// textPart is one element of an array-valued message content.
type textPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// FNV-1a 64: a fixed function, so every gateway replica and every restart
// maps the same prompt to the same key.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// prefixHasher hashes at most budget bytes.
type prefixHasher struct {
	h      uint64
	budget int // bytes still to hash; < 0 means unlimited
	n      int // bytes hashed
}

func (p *prefixHasher) full() bool { return p.budget == 0 }

// newPrefixHasher hashes at most maxChars bytes; maxChars <= 0 means no
// bound.
func newPrefixHasher(maxChars int) prefixHasher {
	p := prefixHasher{h: fnvOffset, budget: maxChars}
	if maxChars <= 0 {
		p.budget = -1
	}
	return p
}

// key is the hash of what was written: 0 (no key) when nothing was, and
// never 0 otherwise.
func (p *prefixHasher) key() uint64 {
	if p.n == 0 {
		return 0
	}
	if p.h == 0 {
		return 1
	}
	return p.h
}

// writePrompt hashes a completions prompt (a string, or an array whose
// first element is one); false when it is neither or empty.
func (p *prefixHasher) writePrompt(raw []byte) bool {
	s, ok := promptString(raw)
	if !ok || s == "" {
		return false
	}
	p.writeString(s)
	return true
}

func (p *prefixHasher) writeString(s string) { writeHash(p, s) }

// writeBytes is writeString for bytes read in place.
func (p *prefixHasher) writeBytes(s []byte) { writeHash(p, s) }

func writeHash[T string | []byte](p *prefixHasher, s T) {
	if p.budget >= 0 && len(s) > p.budget {
		s = s[:p.budget]
	}
	h := p.h
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	p.h = h
	p.n += len(s)
	if p.budget > 0 {
		p.budget -= len(s)
	}
}

// PrefixKey hashes the leading part of an inference request's prompt, for
// prefix-affinity routing: requests whose first maxChars bytes of prompt
// agree get the same key, whatever follows.
//
// For chat completions the prompt is each message's role and text content,
// in order, with separators (so "ab"+"c" and "a"+"bc" differ); a content
// that is an array contributes the text of its parts. For completions it is
// "prompt", a string or the first string of an array. The body is decoded,
// so key order and whitespace do not matter. maxChars counts bytes of that
// text, separators included; maxChars <= 0 hashes it all.
//
// PrefixKey returns 0 when the body has no prompt (or is not valid JSON,
// or a message or role has the wrong JSON type); a real prompt never
// hashes to 0. It reads the body in place: past the budget only the
// messages' JSON types are checked (the key stays what a decode into
// prefixFields gave, which such an error zeroed).
func PrefixKey(body []byte, maxChars int) uint64 {
	if !json.Valid(body) {
		return 0
	}
	i := skipSpace(body, 0)
	if body[i] != '{' {
		return 0 // null decodes to no prompt, any other value fails
	}
	var msgs, prompt prefixMember
	nmsgs := 0
	for at := i + 1; ; {
		m, end, ok := nextMember(body, at)
		if !ok {
			break
		}
		at = end
		switch {
		case keyIs(body[m.k0:m.k1], "messages"):
			msgs = m
			nmsgs++
		case keyIs(body[m.k0:m.k1], "prompt"):
			prompt = m
		}
	}
	if nmsgs > 1 {
		// A later "messages" decodes into the earlier one's elements
		// (encoding/json reuses them): rare enough to leave to the decode.
		return prefixKeyDecoded(body, maxChars)
	}
	p := newPrefixHasher(maxChars)
	n := 0
	if nmsgs == 1 {
		var ok bool
		if n, ok = hashMessages(&p, body, msgs.v0); !ok {
			return 0
		}
	}
	switch {
	case n > 0:
	case prompt.v1 > prompt.v0:
		if !p.writePrompt(body[prompt.v0:prompt.v1]) {
			return 0
		}
	default:
		return 0
	}
	return p.key()
}

// hashMessages hashes the messages array at body[v0] while p has budget
// and checks the JSON types of the rest: n is the number of messages, ok
// false where decoding into prefixFields would fail.
func hashMessages(p *prefixHasher, body []byte, v0 int) (n int, ok bool) {
	switch body[v0] {
	case 'n':
		return 0, true
	case '[':
	default:
		return 0, false
	}
	for at := v0 + 1; ; n++ {
		e0, e1, more := nextElem(body, at)
		if !more {
			return n, true
		}
		at = e1
		var role, content []byte
		switch body[e0] {
		case 'n': // a null message is an empty one
		case '{':
			for mat := e0 + 1; ; {
				m, end, more := nextMember(body, mat)
				if !more {
					break
				}
				mat = end
				v := body[m.v0:m.v1]
				switch {
				case keyIs(body[m.k0:m.k1], "role"):
					switch v[0] {
					case 'n': // null leaves a string as it was
					case '"':
						if !p.full() {
							s, ok := rawStringValue(v)
							if !ok {
								return 0, false
							}
							role = s
						}
					default:
						return 0, false
					}
				case keyIs(body[m.k0:m.k1], "content"):
					content = v
				}
			}
		default:
			return 0, false
		}
		if p.full() {
			continue
		}
		p.writeBytes(role)
		p.writeString("\x00")
		writeContent(p, content)
		p.writeString("\x1e")
	}
}

// prefixKeyDecoded is PrefixKey by a decode into prefixFields, for the
// bodies whose key depends on how encoding/json merges repeated keys.
func prefixKeyDecoded(body []byte, maxChars int) uint64 {
	var f prefixFields
	if err := json.Unmarshal(body, &f); err != nil {
		return 0
	}
	p := newPrefixHasher(maxChars)
	switch {
	case len(f.Messages) > 0:
		for _, m := range f.Messages {
			if p.full() {
				break
			}
			p.writeString(m.Role)
			p.writeString("\x00")
			writeContent(&p, m.Content)
			p.writeString("\x1e")
		}
	case len(f.Prompt) > 0:
		if !p.writePrompt(f.Prompt) {
			return 0
		}
	default:
		return 0
	}
	return p.key()
}

// writeContent hashes a message content: a string, or an array of parts of
// which those with text count. Other shapes (null, images only) add nothing.
func writeContent(p *prefixHasher, raw json.RawMessage) {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return
	}
	switch raw[0] {
	case '"':
		if s, ok := rawStringValue(bytes.TrimRight(raw, " \t\r\n")); ok {
			p.writeBytes(s)
		}
	case '[':
		var parts []textPart
		if json.Unmarshal(raw, &parts) != nil {
			return
		}
		for i, part := range parts {
			if p.full() {
				return
			}
			if part.Type != "" && part.Type != "text" && part.Type != "input_text" {
				continue
			}
			if i > 0 {
				p.writeString("\x1f")
			}
			p.writeString(part.Text)
		}
	}
}

// promptString returns a completions prompt as a string: the prompt itself
// or the first element of an array of strings.
func promptString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err == nil
	case '[':
		// raw is valid JSON: the first element is all that is read.
		e0, e1, ok := nextElem(raw, 1)
		if !ok {
			return "", false
		}
		var s string
		err := json.Unmarshal(raw[e0:e1], &s)
		return s, err == nil
	}
	return "", false
}

// ResponsesPrefixKey is PrefixKey for a Responses API request: the prompt
// is "instructions" as a system message, then "input" (a string, a user
// message; or its items in order, a message's role and text content as
// PrefixKey reads chat messages). So a chat request with the same system
// prompt and first turns gets the same key, as the backend's prefix cache
// shares them too. Like PrefixKey it reads the body in place, hashing
// items while it has budget and only checking the rest's JSON types (one
// wrong type anywhere in "input" drops all its items, as the decode into
// structs it replaced did).
func ResponsesPrefixKey(body []byte, maxChars int) uint64 {
	if !json.Valid(body) {
		return 0
	}
	i := skipSpace(body, 0)
	if body[i] != '{' {
		return 0
	}
	var instr, input []byte
	for at := i + 1; ; {
		m, end, ok := nextMember(body, at)
		if !ok {
			break
		}
		at = end
		switch {
		case keyIs(body[m.k0:m.k1], "instructions"):
			instr = body[m.v0:m.v1]
		case keyIs(body[m.k0:m.k1], "input"):
			input = body[m.v0:m.v1]
		}
	}
	p := newPrefixHasher(maxChars)
	if s, ok := promptString(instr); ok && s != "" && !bytes.HasPrefix(instr, []byte("[")) {
		p.writeString("system\x00")
		p.writeString(s)
		p.writeString("\x1e")
	}
	switch {
	case len(input) > 0 && input[0] == '"':
		p.writeString("user\x00")
		writeContent(&p, input)
		p.writeString("\x1e")
	case len(input) > 0 && input[0] == '[':
		if q, ok := hashItems(p, input); ok {
			p = q
		}
	}
	return p.key()
}

// hashItems hashes the input items of arr onto a copy of p while it has
// budget and checks the JSON types of the rest; ok is false where decoding
// arr into structs of a type, a role and a raw content would fail. An item
// is a message (role and content, with or without "type": "message") or
// another item (a function call's output, a reasoning item), which adds
// its type only.
func hashItems(p prefixHasher, arr []byte) (prefixHasher, bool) {
	for at := 1; ; {
		e0, e1, more := nextElem(arr, at)
		if !more {
			return p, true
		}
		at = e1
		var typ, role, content []byte
		switch arr[e0] {
		case 'n':
		case '{':
			for mat := e0 + 1; ; {
				m, end, more := nextMember(arr, mat)
				if !more {
					break
				}
				mat = end
				v := arr[m.v0:m.v1]
				k := arr[m.k0:m.k1]
				isType, isRole := keyIs(k, "type"), keyIs(k, "role")
				switch {
				case isType || isRole:
					switch v[0] {
					case 'n':
					case '"':
						if p.full() {
							break
						}
						s, ok := rawStringValue(v)
						if !ok {
							return p, false
						}
						if isType {
							typ = s
						} else {
							role = s
						}
					default:
						return p, false
					}
				case keyIs(k, "content"):
					content = v
				}
			}
		default:
			return p, false
		}
		if p.full() {
			continue
		}
		if len(role) == 0 {
			p.writeBytes(typ)
			p.writeString("\x1e")
			continue
		}
		p.writeBytes(role)
		p.writeString("\x00")
		writeContent(&p, content)
		p.writeString("\x1e")
	}
}
