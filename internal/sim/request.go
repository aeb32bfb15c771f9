package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

type endpointKind uint8

const (
	kindChat       endpointKind = iota // /v1/chat/completions
	kindCompletion                     // /v1/completions
)

// request is what the simulator needs from a completion request. The token
// model is deliberately simple so load generators can predict it exactly:
// one prompt token per whitespace-separated word of the message contents (or
// prompt), and exactly maxTokens output tokens.
type request struct {
	kind         endpointKind
	model        string
	stream       bool
	includeUsage bool
	promptTokens int
	maxTokens    int
	promptHash   uint64   // hash of all prompt words; seeds the output text
	blocks       []uint64 // chained hash after each full block of BlockSize words
}

// wireRequest is the subset of the OpenAI request body the simulator reads.
type wireRequest struct {
	Model               string          `json:"model"`
	Messages            []wireMessage   `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

type wireMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type contentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// errBadRequest marks every parse failure; the handler maps it to 400.
var errBadRequest = errors.New("invalid request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadRequest}, args...)...)
}

// parseRequest decodes a chat or text completion body. blockSize > 0 also
// computes the prefix-cache block chain; Instant mode passes 0 to skip it.
func parseRequest(kind endpointKind, body []byte, blockSize, defaultMaxTokens int) (request, error) {
	var wr wireRequest
	if err := json.Unmarshal(body, &wr); err != nil {
		return request{}, badRequest("body is not valid JSON: %w", err)
	}
	req := request{kind: kind, model: wr.Model, stream: wr.Stream, maxTokens: defaultMaxTokens}
	if wr.StreamOptions != nil {
		req.includeUsage = wr.StreamOptions.IncludeUsage
	}
	switch {
	case wr.MaxCompletionTokens != nil:
		req.maxTokens = *wr.MaxCompletionTokens
	case wr.MaxTokens != nil:
		req.maxTokens = *wr.MaxTokens
	}
	if req.maxTokens < 1 {
		return request{}, badRequest("max_tokens must be at least 1, got %d", req.maxTokens)
	}
	sc := promptScanner{blockSize: blockSize, hash: fnvOffset64}
	var err error
	if kind == kindChat {
		err = scanMessages(&sc, wr.Messages)
	} else {
		err = scanPrompt(&sc, wr.Prompt)
	}
	if err != nil {
		return request{}, err
	}
	req.promptTokens, req.promptHash, req.blocks = sc.tokens, sc.hash, sc.blocks
	return req, nil
}

func scanMessages(sc *promptScanner, msgs []wireMessage) error {
	if msgs == nil {
		return badRequest("messages is required")
	}
	for i, m := range msgs {
		c := bytes.TrimSpace(m.Content)
		if len(c) == 0 || string(c) == "null" {
			continue // e.g. an assistant turn that only carries tool calls
		}
		switch c[0] {
		case '"':
			var s string
			if err := json.Unmarshal(c, &s); err != nil {
				return badRequest("messages[%d].content: %w", i, err)
			}
			sc.addText(s)
		case '[':
			var parts []contentPart
			if err := json.Unmarshal(c, &parts); err != nil {
				return badRequest("messages[%d].content: %w", i, err)
			}
			for _, p := range parts {
				if p.Type == "" || p.Type == "text" {
					sc.addText(p.Text)
				}
			}
		default:
			return badRequest("messages[%d].content must be a string or an array of parts", i)
		}
	}
	return nil
}

// scanPrompt accepts every prompt shape of the completions API: a string, an
// array of strings, an array of token ids, or an array of token-id arrays.
// A token id counts as one token (its decimal form is hashed as a word).
func scanPrompt(sc *promptScanner, raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return badRequest("prompt is required")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return badRequest("prompt: %w", err)
		}
		sc.addText(s)
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return badRequest("prompt must be a string or an array: %w", err)
	}
	for i, it := range items {
		if len(it) == 0 {
			continue
		}
		switch it[0] {
		case '"':
			var s string
			if err := json.Unmarshal(it, &s); err != nil {
				return badRequest("prompt[%d]: %w", i, err)
			}
			sc.addText(s)
		case '[':
			var ids []int64
			if err := json.Unmarshal(it, &ids); err != nil {
				return badRequest("prompt[%d]: %w", i, err)
			}
			for _, id := range ids {
				sc.addTokenID(id)
			}
		default:
			var id int64
			if err := json.Unmarshal(it, &id); err != nil {
				return badRequest("prompt[%d]: %w", i, err)
			}
			sc.addTokenID(id)
		}
	}
	return nil
}

// promptScanner counts words and hashes them without allocating per word.
// The block chain needs no separate state: the running FNV-1a hash after
// k*blockSize words already depends on every earlier word, so it is the
// chained hash of block k (as vLLM chains parent hashes into block hashes).
type promptScanner struct {
	blockSize int
	tokens    int
	hash      uint64
	blocks    []uint64
	scratch   [24]byte
}

func (sc *promptScanner) addText(s string) {
	start := -1
	for i := 0; i < len(s); {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		if isSpace(r) {
			if start >= 0 {
				sc.addWord(s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
		i += size
	}
	if start >= 0 {
		sc.addWord(s[start:])
	}
}

// isSpace matches strings.Fields, with an ASCII fast path.
func isSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
	}
	return unicode.IsSpace(r)
}

func (sc *promptScanner) addTokenID(id int64) {
	b := strconv.AppendInt(sc.scratch[:0], id, 10)
	h := sc.hash
	for _, c := range b {
		h = (h ^ uint64(c)) * fnvPrime64
	}
	sc.endWord(h)
}

func (sc *promptScanner) addWord(w string) {
	h := sc.hash
	for i := 0; i < len(w); i++ {
		h = (h ^ uint64(w[i])) * fnvPrime64
	}
	sc.endWord(h)
}

func (sc *promptScanner) endWord(h uint64) {
	sc.hash = (h ^ ' ') * fnvPrime64 // word separator, so "ab c" != "a bc"
	sc.tokens++
	if sc.blockSize > 0 && sc.tokens%sc.blockSize == 0 {
		sc.blocks = append(sc.blocks, sc.hash)
	}
}
