package openai

import "bytes"

// ErrorObject reports whether obj, a valid JSON object, is an error rather
// than an answer: it has a top-level "error" member that is not null
// (OpenAI's {"error": {...}}), or "object": "error" (vLLM's ErrorResponse,
// which its streams send bare). A completion, a chunk or an embedding list
// has neither, so such an object in a 2xx answer or a stream is a backend
// reporting a failure, not a result to relay as one or to cache. Keys are
// matched as written (a backend does not escape them); only the top level
// counts, so a message that merely says "error" is not one.
func ErrorObject(obj []byte) bool {
	if !bytes.Contains(obj, errorWord) { // a memmem: most objects stop here
		return false
	}
	m := newMembers(obj)
	for {
		key, val, ok := m.next()
		if !ok {
			return false
		}
		switch string(key) {
		case "error":
			if string(val) != "null" {
				return true
			}
		case "object":
			if string(val) == `"error"` {
				return true
			}
		}
	}
}

var errorWord = []byte(`error"`)

// EmptyObject reports whether obj, a valid JSON object, has no members
// (`{}`): well-formed, so a backend's 200 with it is relayed, but it holds
// no result (no choices, no data), so it is never cached for the next
// caller: a broken backend's one answer would be replayed for the TTL.
func EmptyObject(obj []byte) bool {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return false
	}
	j := skipSpace(obj, i+1)
	return j < len(obj) && obj[j] == '}'
}
