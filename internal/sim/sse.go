package sim

import (
	"encoding/json"
	"strconv"
)

// doneEvent ends every complete stream, as in the OpenAI API.
const doneEvent = "data: [DONE]\n\n"

// usage is the OpenAI usage object. PromptTokensDetails appears only when
// the prefix cache served part of the prompt.
type usage struct {
	PromptTokens        int            `json:"prompt_tokens"`
	CompletionTokens    int            `json:"completion_tokens"`
	TotalTokens         int            `json:"total_tokens"`
	PromptTokensDetails *promptDetails `json:"prompt_tokens_details,omitempty"`
}

type promptDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

func newUsage(prompt, completion, cached int) usage {
	u := usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
	if cached > 0 {
		u.PromptTokensDetails = &promptDetails{CachedTokens: cached}
	}
	return u
}

// appendUsage appends exactly the bytes json.Marshal(u) would produce.
func appendUsage(b []byte, u usage) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(u.PromptTokens), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(u.CompletionTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(u.TotalTokens), 10)
	if u.PromptTokensDetails != nil {
		b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
		b = strconv.AppendInt(b, int64(u.PromptTokensDetails.CachedTokens), 10)
		b = append(b, '}')
	}
	return append(b, '}')
}

// chunkEncoder appends the SSE events of one streamed response to a byte
// slice. Streams are the simulator's hot path, so events are spliced from
// fixed pieces instead of going through encoding/json once per token; the
// bytes match what json.Marshal of the OpenAI chunk objects would give.
type chunkEncoder struct {
	chat bool
	head []byte // `data: {"id":…,"object":…,"created":…,"model":…,"choices":[`
}

func newChunkEncoder(kind endpointKind, id string, created int64, modelJSON []byte) chunkEncoder {
	object := "text_completion"
	if kind == kindChat {
		object = "chat.completion.chunk"
	}
	idJSON, _ := json.Marshal(id) // a string always marshals
	h := make([]byte, 0, 128+len(modelJSON))
	h = append(h, `data: {"id":`...)
	h = append(h, idJSON...)
	h = append(h, `,"object":"`...)
	h = append(h, object...)
	h = append(h, `","created":`...)
	h = strconv.AppendInt(h, created, 10)
	h = append(h, `,"model":`...)
	h = append(h, modelJSON...)
	h = append(h, `,"choices":[`...)
	return chunkEncoder{chat: kind == kindChat, head: h}
}

// token appends one token event. The first chat chunk also carries the
// assistant role, as OpenAI's does. word must need no JSON escaping.
func (c *chunkEncoder) token(b []byte, word string, first bool) []byte {
	b = append(b, c.head...)
	if c.chat {
		b = append(b, `{"index":0,"delta":{`...)
		if first {
			b = append(b, `"role":"assistant",`...)
		}
		b = append(b, `"content":"`...)
	} else {
		b = append(b, `{"index":0,"text":"`...)
	}
	b = append(b, word...)
	if c.chat {
		return append(b, " \"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"...)
	}
	return append(b, " \",\"logprobs\":null,\"finish_reason\":null}]}\n\n"...)
}

// final appends the event that carries finish_reason and no content.
func (c *chunkEncoder) final(b []byte) []byte {
	b = append(b, c.head...)
	if c.chat {
		return append(b, "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\"}]}\n\n"...)
	}
	return append(b, "{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"length\"}]}\n\n"...)
}

// usageChunk appends the stream_options.include_usage event: no choices.
func (c *chunkEncoder) usageChunk(b []byte, u usage) []byte {
	b = append(b, c.head...)
	b = append(b, `],"usage":`...)
	b = appendUsage(b, u)
	return append(b, "}\n\n"...)
}
