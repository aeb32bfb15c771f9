package openai

import (
	"bytes"
	"encoding/json"
)

// Usage is the token accounting an OpenAI-compatible server reports.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

var usageKey = []byte(`"usage":`)

// FindUsage looks for the last "usage" object in tail (the end of a response
// body or of an SSE stream, where servers put it) and decodes it. ok is false
// when there is none or it is null.
func FindUsage(tail []byte) (u Usage, ok bool) {
	i := bytes.LastIndex(tail, usageKey)
	if i < 0 {
		return Usage{}, false
	}
	rest := bytes.TrimLeft(tail[i+len(usageKey):], " \t\r\n")
	if len(rest) == 0 || rest[0] != '{' {
		return Usage{}, false
	}
	dec := json.NewDecoder(bytes.NewReader(rest))
	if err := dec.Decode(&u); err != nil {
		return Usage{}, false
	}
	return u, true
}
