package openai

import (
	"bytes"
	"encoding/json"
	"strings"
)

// SSEComment renders text as one SSE comment line (": text") followed by
// the blank line that ends a block. Parsers, the official SDKs' included,
// ignore comments (WHATWG HTML, "Server-sent events", interpreting an event
// stream: a line starting with a colon is ignored). Line breaks in text
// are replaced, so it stays one line.
func SSEComment(text string) []byte {
	text = strings.NewReplacer("\r", " ", "\n", " ").Replace(text)
	out := make([]byte, 0, len(text)+4)
	out = append(out, ": "...)
	out = append(out, text...)
	return append(out, "\n\n"...)
}

// ErrorEventOf turns a backend's error answer (the body of a non-2xx
// response) into one SSE event for a stream whose status is already sent:
// a JSON object with an "error" object, compacted onto the one data line
// an event can carry. ok is false for anything else (not JSON, another
// shape): the caller sends an error of its own.
func ErrorEventOf(body []byte) (event []byte, ok bool) {
	var probe struct {
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(body, &probe); err != nil || len(probe.Error) == 0 || probe.Error[0] != '{' {
		return nil, false
	}
	var compact bytes.Buffer
	compact.Grow(len(body) + 8)
	compact.WriteString("data: ")
	if err := json.Compact(&compact, body); err != nil {
		return nil, false
	}
	compact.WriteString("\n\n")
	return compact.Bytes(), true
}
