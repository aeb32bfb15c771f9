package openai

import (
	"bytes"
)

// Usage is the token accounting an OpenAI-compatible server reports.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

var (
	usageKey      = []byte(UsageKey)
	promptKey     = []byte(`"prompt_tokens":`)
	completionKey = []byte(`"completion_tokens":`)
)

// FindUsage looks for the last "usage" object in tail (the end of a response
// body or of an SSE stream, where servers put it) and reads its two token
// counts. ok is false when there is none or it is null. It scans instead of
// decoding because it runs on every response.
func FindUsage(tail []byte) (u Usage, ok bool) {
	i := lastUsageKey(tail)
	if i < 0 {
		return Usage{}, false
	}
	obj := bytes.TrimLeft(tail[i+len(usageKey):], " \t\r\n")
	if len(obj) == 0 || obj[0] != '{' {
		return Usage{}, false
	}
	if end := bytes.IndexByte(obj, '}'); end >= 0 {
		obj = obj[:end] // token counts sit before any nested object closes
	} else {
		return Usage{}, false
	}
	p, okP := intAfter(obj, promptKey)
	c, okC := intAfter(obj, completionKey)
	if !okP && !okC || p < 0 || c < 0 {
		return Usage{}, false
	}
	return Usage{PromptTokens: p, CompletionTokens: c}, true
}

// UsageKey is the key FindUsage and FindEndpointUsage look for: they read
// the usage object after its last occurrence.
const UsageKey = `"usage":`

// lastUsageKey is bytes.LastIndex(tail, usageKey), found from the colon
// that ends the key: the last colon in a JSON tail is a few members from
// its end, and a byte search back to it costs a fraction of LastIndex's
// rolling hash over the same bytes. The key cannot overlap itself, so the
// last colon that ends it ends its last occurrence.
func lastUsageKey(tail []byte) int {
	for end := len(tail); ; {
		c := bytes.LastIndexByte(tail[:end], ':')
		if c < 0 {
			return -1
		}
		if start := c + 1 - len(usageKey); start >= 0 && string(tail[start:c+1]) == string(usageKey) {
			return start
		}
		end = c
	}
}

// intAfter parses the non-negative integer following key in s. A count
// no answer can hold is -1 (with ok): one over MaxTokensLimit, or a
// number that is negative or has a fraction or an exponent (1e300),
// which a backend that counts tokens does not write. Its callers take a usage holding one as
// unknown, so the request keeps its estimate: believed, a single answer
// claiming 2^63 tokens (the parse stopped at 13 digits: 9.2e12 each) put
// every token limit it was charged to (a tenant's, the gateway's) into
// debt, so that limit's clients were refused for a window, and added
// 1.8e13 to sluice_tokens_total and the scaling signal's service rate.
func intAfter(s, key []byte) (int, bool) {
	i := bytes.Index(s, key)
	if i < 0 {
		return 0, false
	}
	s = bytes.TrimLeft(s[i+len(key):], " \t\r\n")
	if len(s) > 0 && s[0] == '-' {
		return -1, true
	}
	n, digits := 0, 0
	for _, ch := range s {
		if ch < '0' || ch > '9' {
			if digits > 0 && (ch == '.' || ch == 'e' || ch == 'E') {
				return -1, true
			}
			break
		}
		if n = n*10 + int(ch-'0'); n > MaxTokensLimit {
			return -1, true
		}
		digits++
	}
	return n, digits > 0
}
