package openai

import (
	"bytes"
	"fmt"
)

// JSONToSSE turns a JSON completion into the SSE stream a streaming
// request gets, chunks an SDK accumulates (accumulator) back into the same
// completion: per choice, a role chunk (with the message's members that
// are null or empty: refusal, annotations), a content chunk carrying the
// choice's logprobs, a chunk for each other member (tool calls with their
// index, function_call, refusal, reasoning, audio, a newer field), and a
// finish chunk with the choice's other members (vLLM's stop_reason); then
// a usage chunk when includeUsage and the body has usage. Every chunk has
// the body's members in its order: id, created, model, service_tier and
// system_fingerprint in each, others (vLLM's prompt_logprobs, a newer
// field) in the first only; with includeUsage "usage":null in every chunk
// but the last, as OpenAI's.
func JSONToSSE(body []byte, includeUsage bool) ([]byte, error) {
	c, err := parseObject(body)
	if err != nil {
		return nil, fmt.Errorf("%w: body: %w", ErrNotConvertible, err)
	}
	object, _ := c.str("object")
	var chunkObject string
	switch object {
	case "chat.completion":
		chunkObject = "chat.completion.chunk"
	case "text_completion":
		chunkObject = "text_completion"
	default:
		return nil, fmt.Errorf("%w: object %q", ErrNotConvertible, object)
	}
	list, ok := c.val("choices").([]any)
	if v, there := c.get("choices"); !ok && there && v != nil {
		return nil, fmt.Errorf("%w: choices is not an array", ErrNotConvertible)
	}
	w := chunkWriter{head: c, object: chunkObject, includeUsage: includeUsage, first: true}
	for _, v := range list {
		ch, ok := v.(*jsonObject)
		if !ok {
			return nil, fmt.Errorf("%w: a choice is not an object", ErrNotConvertible)
		}
		var chunks []*jsonObject
		if chunkObject == "text_completion" {
			chunks = textChunks(ch)
		} else {
			chunks = chatChunks(ch)
		}
		for _, cs := range chunks {
			w.chunk([]any{cs})
		}
	}
	if u, ok := c.get("usage"); includeUsage && ok && u != nil {
		w.chunk([]any{})
	}
	w.b.WriteString("data: [DONE]\n\n")
	return w.b.Bytes(), nil
}

// chunkWriter writes the chunks of one converted completion.
type chunkWriter struct {
	b            bytes.Buffer
	head         *jsonObject // the completion
	object       string
	includeUsage bool
	first        bool // the next chunk is the first
	buf          []byte
}

// chunk writes one chunk with the given choices; none makes the usage
// chunk.
func (w *chunkWriter) chunk(choices []any) {
	out := newObject()
	for _, mb := range w.head.members {
		k := mb.key
		switch k {
		case "object":
			out.set(k, w.object)
		case "choices":
			out.set(k, choices)
		case "usage":
			if !w.includeUsage {
				continue
			}
			if len(choices) == 0 {
				out.set(k, mb.val)
			} else {
				out.set(k, nil)
			}
		case "id", "created", "model", "service_tier", "system_fingerprint":
			out.set(k, mb.val)
		default:
			if w.first {
				out.set(k, mb.val)
			}
		}
	}
	if _, ok := out.get("choices"); !ok {
		out.set("choices", choices)
	}
	if _, ok := out.get("usage"); w.includeUsage && !ok {
		out.set("usage", nil)
	}
	w.first = false
	w.buf = appendJSON(w.buf[:0], out)
	writeEvent(&w.b, w.buf)
}

// choiceChunk is one chunk's choice: index, the payload (delta or text),
// logprobs, finish_reason.
func choiceChunk(index any, key string, payload any, logprobs, finish any) *jsonObject {
	o := newObject()
	o.set("index", index)
	o.set(key, payload)
	o.set("logprobs", logprobs)
	o.set("finish_reason", finish)
	return o
}

// textChunks streams a text_completion choice: its text with its
// logprobs, then the finish with its other members.
func textChunks(ch *jsonObject) []*jsonObject {
	idx := choiceIndex(ch)
	text, _ := ch.str("text")
	last := choiceChunk(idx, "text", "", nil, ch.val("finish_reason"))
	copyOthers(last, ch, "index", "text", "logprobs", "finish_reason")
	return []*jsonObject{choiceChunk(idx, "text", text, ch.val("logprobs"), nil), last}
}

// chatChunks streams a chat.completion choice (JSONToSSE).
func chatChunks(ch *jsonObject) []*jsonObject {
	idx := choiceIndex(ch)
	msg := ch.obj("message")
	if msg == nil {
		msg = newObject()
	}
	role := newObject()
	if r, _ := msg.str("role"); r != "" {
		role.set("role", r)
	} else {
		role.set("role", "assistant")
	}
	var rest []*jsonObject // the deltas after the role's
	for _, mb := range msg.members {
		k, v := mb.key, mb.val
		switch {
		case k == "role":
		case k == "content":
			s, isString := v.(string)
			switch {
			case !isString:
				role.set(k, v) // null: a call or a refusal
			case s == "":
				role.set(k, "")
			default:
				role.set(k, "")
				rest = append(rest, delta(k, v))
			}
		case empty(v):
			role.set(k, v) // refusal null, annotations []: nothing to add to
		case k == "tool_calls":
			rest = append(rest, delta(k, indexedCalls(v)))
		default: // refusal, function_call, audio, reasoning_content, a newer field
			rest = append(rest, delta(k, v))
		}
	}
	logprobs := ch.val("logprobs")
	chunks := []*jsonObject{choiceChunk(idx, "delta", role, nil, nil)}
	for _, d := range rest {
		chunks = append(chunks, choiceChunk(idx, "delta", d, logprobs, nil))
		logprobs = nil // the first delta after the role's carries them
	}
	last := choiceChunk(idx, "delta", newObject(), logprobs, ch.val("finish_reason"))
	copyOthers(last, ch, "index", "message", "logprobs", "finish_reason")
	return append(chunks, last)
}

func delta(k string, v any) *jsonObject {
	d := newObject()
	d.set(k, v)
	return d
}

// indexedCalls is a message's tool calls as a delta lists them: each with
// its "index" first.
func indexedCalls(v any) any {
	calls, ok := v.([]any)
	if !ok {
		return v
	}
	out := make([]any, len(calls))
	for i, c := range calls {
		tc, ok := c.(*jsonObject)
		if !ok {
			out[i] = c
			continue
		}
		withIndex := newObject()
		withIndex.set("index", jsonInt(i))
		for _, mb := range tc.members {
			k := mb.key
			if k != "index" {
				withIndex.set(k, mb.val)
			}
		}
		out[i] = withIndex
	}
	return out
}

// empty reports null, "", [] and {}: a member a delta adds nothing to.
func empty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case *jsonObject:
		return len(v.members) == 0
	}
	return false
}

func choiceIndex(ch *jsonObject) any {
	if v, ok := ch.get("index"); ok && v != nil {
		return v
	}
	return jsonInt(0)
}

// copyOthers copies src's members but skip into dst.
func copyOthers(dst, src *jsonObject, skip ...string) {
	for _, mb := range src.members {
		k := mb.key
		known := false
		for _, s := range skip {
			known = known || k == s
		}
		if !known {
			dst.set(k, mb.val)
		}
	}
}
