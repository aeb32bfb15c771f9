package openai

// The prefix keys as computed before they were read straight from the body
// (a whole decode of messages or input into structs): kept here so
// FuzzPrefixKeyMatchesTree holds the scanner to them.

import (
	"bytes"
	"encoding/json"
)

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
// PrefixKey returns 0 when the body has no prompt (or is not valid JSON);
// a real prompt never hashes to 0.
func prefixKeyTree(body []byte, maxChars int) uint64 {
	var f prefixFields
	if err := json.Unmarshal(body, &f); err != nil {
		return 0
	}
	p := prefixHasher{h: fnvOffset, budget: maxChars}
	if maxChars <= 0 {
		p.budget = -1
	}
	switch {
	case len(f.Messages) > 0:
		for _, m := range f.Messages {
			if p.full() {
				break
			}
			p.writeString(m.Role)
			p.writeString("\x00")
			writeContentTree(&p, m.Content)
			p.writeString("\x1e")
		}
	case len(f.Prompt) > 0:
		s, ok := promptStringTree(f.Prompt)
		if !ok || s == "" {
			return 0
		}
		p.writeString(s)
	default:
		return 0
	}
	if p.n == 0 {
		return 0
	}
	if p.h == 0 {
		return 1
	}
	return p.h
}

// writeContent hashes a message content: a string, or an array of parts of
// which those with text count. Other shapes (null, images only) add nothing.
func writeContentTree(p *prefixHasher, raw json.RawMessage) {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			p.writeString(s)
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
func promptStringTree(raw json.RawMessage) (string, bool) {
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
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) != nil || len(arr) == 0 {
			return "", false
		}
		var s string
		err := json.Unmarshal(arr[0], &s)
		return s, err == nil
	}
	return "", false
}

// responsesPrefixFieldsTree is the part of a Responses API request
// ResponsesPrefixKey reads.
type responsesPrefixFieldsTree struct {
	Instructions json.RawMessage `json:"instructions"`
	Input        json.RawMessage `json:"input"`
}

// responsesItemTree is one element of an array-valued "input": a message
// (role and content, with or without "type": "message") or another item
// (a function call's output, a reasoning item), which adds its type only.
type responsesItemTree struct {
	Type    string          `json:"type"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// ResponsesPrefixKey is PrefixKey for a Responses API request: the prompt
// is "instructions" as a system message, then "input" (a string, a user
// message; or its items in order, a message's role and text content as
// PrefixKey reads chat messages). So a chat request with the same system
// prompt and first turns gets the same key, as the backend's prefix cache
// shares them too.
func responsesPrefixKeyTree(body []byte, maxChars int) uint64 {
	var f responsesPrefixFieldsTree
	if err := json.Unmarshal(body, &f); err != nil {
		return 0
	}
	p := prefixHasher{h: fnvOffset, budget: maxChars}
	if maxChars <= 0 {
		p.budget = -1
	}
	if s, ok := promptStringTree(f.Instructions); ok && s != "" && !bytes.HasPrefix(bytes.TrimLeft(f.Instructions, " \t\r\n"), []byte("[")) {
		p.writeString("system\x00")
		p.writeString(s)
		p.writeString("\x1e")
	}
	in := bytes.TrimLeft(f.Input, " \t\r\n")
	switch {
	case len(in) > 0 && in[0] == '"':
		p.writeString("user\x00")
		writeContentTree(&p, in)
		p.writeString("\x1e")
	case len(in) > 0 && in[0] == '[':
		var items []responsesItemTree
		if json.Unmarshal(in, &items) != nil {
			break
		}
		for _, it := range items {
			if p.full() {
				break
			}
			if it.Role == "" {
				p.writeString(it.Type)
				p.writeString("\x1e")
				continue
			}
			p.writeString(it.Role)
			p.writeString("\x00")
			writeContentTree(&p, it.Content)
			p.writeString("\x1e")
		}
	}
	if p.n == 0 {
		return 0
	}
	if p.h == 0 {
		return 1
	}
	return p.h
}
