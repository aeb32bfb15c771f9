package openai

import "bytes"

// The model-addressed endpoints (ModelEndpoint) report usage in shapes
// FindUsage, which reads prompt_tokens and completion_tokens for the chat
// family at the least cost, does not know:
//
//   - vLLM's score, classify and pooling: UsageInfo, {"prompt_tokens",
//     "total_tokens", "completion_tokens": 0}.
//   - vLLM's rerank: RerankUsage, {"total_tokens"} alone in v0.10
//     (vllm/entrypoints/openai/protocol.py), {"prompt_tokens",
//     "total_tokens"} in main (vllm/entrypoints/pooling/scoring/
//     protocol.py); written before the results, not at the end.
//   - OpenAI's audio transcriptions by a token-billed model:
//     {"type":"tokens","input_tokens","input_token_details":{...},
//     "output_tokens","total_tokens"}, a nested object before the output.
//   - whisper-1 and vLLM's transcriptions: {"type":"duration","seconds"},
//     the audio's length and no tokens; translations and moderations
//     report none.
//
// Only counts the server reported are read: a usage with none of them
// (a duration, none at all, one cut off) is unknown, never zero tokens,
// so the token limit keeps the request's estimate instead of refunding it.

var (
	inputKey  = []byte(`input_tokens`)
	outputKey = []byte(`output_tokens`)
	totalKey  = []byte(`total_tokens`)
	promptK   = []byte(`prompt_tokens`)
	complK    = []byte(`completion_tokens`)
	typeKey   = []byte(`type`)
)

// FindEndpointUsage reads the usage of an answer to a ModelEndpoint from
// b, the answer whole or its end (an event stream's too): the last
// "usage" object in it, which is the answer's own (a key cannot occur
// inside a JSON string, whose quotes are escaped). Its tokens:
// input_tokens and output_tokens when either is there (OpenAI's audio);
// else prompt_tokens and completion_tokens; else total_tokens as input
// (a pooling answer generates nothing). ok is false for a usage of type
// "duration", one with none of these counts, or none.
func FindEndpointUsage(b []byte) (u Usage, ok bool) {
	i := lastUsageKey(b)
	if i < 0 {
		return Usage{}, false
	}
	j := skipSpace(b, i+len(usageKey))
	if j >= len(b) || b[j] != '{' {
		return Usage{}, false
	}
	var c usageCounts
	if !c.read(b, j) || c.duration || c.absurd {
		return Usage{}, false
	}
	switch {
	case c.input >= 0 || c.output >= 0:
		return Usage{PromptTokens: max(c.input, 0), CompletionTokens: max(c.output, 0)}, true
	case c.prompt >= 0:
		return Usage{PromptTokens: c.prompt, CompletionTokens: max(c.completion, 0)}, true
	case c.total >= 0:
		return Usage{PromptTokens: c.total}, true
	}
	return Usage{}, false
}

// usageCounts are the members of a usage object read; -1: absent (or not
// a non-negative integer).
type usageCounts struct {
	input, output, prompt, completion, total int
	duration                                 bool // "type":"duration"
	absurd                                   bool // a count no answer holds (count): the usage is unknown
}

// read reads the members of the object starting at b[i] ('{'); false when
// it is cut off or malformed.
func (c *usageCounts) read(b []byte, i int) bool {
	*c = usageCounts{input: -1, output: -1, prompt: -1, completion: -1, total: -1}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return true
	}
	for i < len(b) {
		if b[i] != '"' {
			return false
		}
		end := skipString(b, i)
		if end >= len(b) || b[end-1] != '"' || end-i < 2 {
			return false
		}
		key := b[i+1 : end-1]
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return false
		}
		vEnd := skipValue(b, i)
		if vEnd >= len(b) {
			return false // the value, or the object after it, is cut off
		}
		c.note(key, b[i:vEnd])
		i = skipSpace(b, vEnd)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case '}':
			return true
		case ',':
			i = skipSpace(b, i+1)
		default:
			return false
		}
	}
	return false
}

// note records member key's value v.
func (c *usageCounts) note(key, v []byte) {
	switch {
	case bytes.Equal(key, typeKey):
		c.duration = string(v) == `"duration"`
		return
	case bytes.Equal(key, inputKey):
		c.input = c.count(v, MaxTokensLimit)
	case bytes.Equal(key, outputKey):
		c.output = c.count(v, MaxTokensLimit)
	case bytes.Equal(key, promptK):
		c.prompt = c.count(v, MaxTokensLimit)
	case bytes.Equal(key, complK):
		c.completion = c.count(v, MaxTokensLimit)
	case bytes.Equal(key, totalKey):
		c.total = c.count(v, 2*MaxTokensLimit) // input and output
	}
}

// count is v as a token count: a non-negative integer, else -1 (null, a
// string, anything else). A number that is not one (negative, with a
// fraction or an exponent) or is over most is no count a real answer
// holds, and marks the usage absurd (intAfter says why).
func (c *usageCounts) count(v []byte, most int) int {
	if len(v) == 0 {
		return -1
	}
	if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
		return -1 // null, a string, an object
	}
	n := 0
	for _, ch := range v {
		if ch < '0' || ch > '9' {
			c.absurd = true
			return -1
		}
		if n = n*10 + int(ch-'0'); n > most {
			c.absurd = true
			return -1
		}
	}
	return n
}
