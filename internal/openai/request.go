package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Peek is the handful of request fields the gateway needs. Everything else
// is forwarded byte for byte without being decoded.
type Peek struct {
	Model     string
	Stream    bool
	MaxTokens int // max_tokens, or max_completion_tokens; 0 when absent
	// IncludeUsage is stream_options.include_usage.
	IncludeUsage bool
	// Deterministic: temperature 0 or a fixed seed, and at most one choice;
	// the precondition for caching, checked here so other requests never
	// pay for the cache key.
	Deterministic bool
}

// peekFields is decoded with encoding/json; unknown fields are skipped by the
// decoder without being materialised.
type peekFields struct {
	Model               *string `json:"model"`
	Stream              bool    `json:"stream"`
	MaxTokens           *int    `json:"max_tokens"`
	MaxCompletionTokens *int    `json:"max_completion_tokens"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Temperature *float64        `json:"temperature"`
	Seed        json.RawMessage `json:"seed"`
	N           *int            `json:"n"`
}

// ErrNotObject is returned for a body that is valid JSON but not an object.
var ErrNotObject = errors.New("request body must be a JSON object")

// ParseRequest extracts the peeked fields from an inference request body.
// requireModel is false for endpoints where a model is optional.
func ParseRequest(body []byte) (Peek, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return Peek{}, errors.New("request body is empty")
	}
	if trimmed[0] != '{' {
		return Peek{}, ErrNotObject
	}
	var f peekFields
	if err := json.Unmarshal(body, &f); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return Peek{}, fmt.Errorf("field %q has the wrong type: %w", typeErr.Field, err)
		}
		return Peek{}, fmt.Errorf("malformed JSON: %w", err)
	}
	p := Peek{Stream: f.Stream}
	if f.Model != nil {
		p.Model = *f.Model
	}
	switch {
	case f.MaxCompletionTokens != nil:
		p.MaxTokens = *f.MaxCompletionTokens
	case f.MaxTokens != nil:
		p.MaxTokens = *f.MaxTokens
	}
	if p.MaxTokens < 0 {
		return Peek{}, errors.New("max_tokens must not be negative")
	}
	if f.StreamOptions != nil {
		p.IncludeUsage = f.StreamOptions.IncludeUsage
	}
	seeded := len(f.Seed) > 0 && string(f.Seed) != "null"
	p.Deterministic = ((f.Temperature != nil && *f.Temperature == 0) || seeded) && (f.N == nil || *f.N == 1)
	return p, nil
}

// ReplaceModel returns body with its top-level "model" set to model. It is
// only used when a backend expects another model name, so its cost (a
// decode into raw fields and a re-encode) stays off the common path.
func ReplaceModel(body []byte, model string) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, err
	}
	m, err := json.Marshal(model)
	if err != nil {
		return nil, err
	}
	fields["model"] = m
	return json.Marshal(fields)
}
