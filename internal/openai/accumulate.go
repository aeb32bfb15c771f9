package openai

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// accumulator folds a stream's chunks into one completion the way the
// official SDKs do (openai-python's ChatCompletionStreamState and its
// accumulate_delta, openai-node's ChatCompletionStream): the first
// chunk's id, created and model; per choice, by its "index", the delta's
// strings concatenated (content, refusal, reasoning_content, reasoning,
// audio's data and transcript, function_call's and each tool call's
// arguments), tool calls merged by their "index", logprobs' lists
// appended (chat's content and refusal; completions' tokens,
// token_logprobs, top_logprobs and text_offset), the finish_reason that
// is not null; the last usage, system_fingerprint and service_tier that
// are not null. Members it does not name survive: a delta's are
// accumulated as its known ones are, a choice's or the chunk's keep
// their last value that is not null (lists appended: vLLM's token_ids).
// OpenAI's "obfuscation" (random padding that evens out the size of a
// stream's events, stream_options.include_obfuscation) is left out: a
// plain answer has none.
type accumulator struct {
	head    *jsonObject         // the chunk's members but its choices
	object  string              // chat.completion or text_completion
	choices map[int]*jsonObject // by index: index, message (or text), logprobs, finish_reason, others
}

// obfuscation is the member OpenAI pads stream events with.
const obfuscation = "obfuscation"

// StreamToJSON assembles the events of a stream (ParseSSE) into the
// chat.completion (or text_completion) a plain request gets, as the SDKs
// accumulate one (accumulator).
func StreamToJSON(events [][]byte) ([]byte, error) {
	a := accumulator{choices: map[int]*jsonObject{}}
	for _, ev := range events {
		if err := a.add(ev); err != nil {
			return nil, err
		}
	}
	if a.head == nil {
		return nil, fmt.Errorf("%w: stream has no chunks", ErrNotConvertible)
	}
	return appendJSON(nil, a.result()), nil
}

// add folds one chunk in.
func (a *accumulator) add(ev []byte) error {
	c, err := parseObject(ev)
	if err != nil {
		return fmt.Errorf("%w: chunk: %w", ErrNotConvertible, err)
	}
	object, _ := c.str("object")
	switch object {
	case "chat.completion.chunk":
		object = "chat.completion"
	case "text_completion":
	default:
		return fmt.Errorf("%w: chunk object %q", ErrNotConvertible, object)
	}
	if a.head == nil {
		a.head, a.object = newObject(), object
	} else if object != a.object {
		return fmt.Errorf("%w: a %s chunk in a %s stream", ErrNotConvertible, object, a.object)
	}
	for _, mb := range c.members {
		k, v := mb.key, mb.val
		switch k {
		case obfuscation:
		case "choices":
			list, ok := v.([]any)
			if !ok && v != nil {
				return fmt.Errorf("%w: chunk choices is not an array", ErrNotConvertible)
			}
			a.head.set(k, nil) // its place; result fills it
			for _, ch := range list {
				if err := a.addChoice(ch); err != nil {
					return err
				}
			}
		case "object":
			a.head.set(k, object)
		case "id", "created", "model":
			if cur, ok := a.head.get(k); !ok || cur == nil {
				a.head.set(k, v) // the first chunk's: they are the same in every chunk
			}
		default: // usage, system_fingerprint, service_tier, a newer field
			keepLast(a.head, k, v)
		}
	}
	return nil
}

// keepLast sets k to v unless v is null and k is already there; lists
// are appended.
func keepLast(o *jsonObject, k string, v any) {
	cur, ok := o.get(k)
	switch {
	case !ok || cur == nil:
		o.set(k, deepCopy(v))
	case v == nil:
	default:
		if l, isList := cur.([]any); isList {
			if more, also := v.([]any); also {
				o.set(k, append(l, deepCopy(more).([]any)...))
				return
			}
		}
		o.set(k, deepCopy(v))
	}
}

func (a *accumulator) addChoice(v any) error {
	ch, ok := v.(*jsonObject)
	if !ok {
		return fmt.Errorf("%w: a chunk's choice is not an object", ErrNotConvertible)
	}
	idx := 0
	if raw, ok := ch.get("index"); ok && raw != nil {
		n, isNum := raw.(json.Number)
		i, err := strconv.Atoi(string(n))
		if !isNum || err != nil || i < 0 {
			return fmt.Errorf("%w: choice index %v", ErrNotConvertible, raw)
		}
		idx = i
	}
	snap := a.choices[idx]
	if snap == nil {
		snap = newObject()
		snap.set("index", json.Number(strconv.Itoa(idx)))
		a.choices[idx] = snap
	}
	for _, mb := range ch.members {
		k, v := mb.key, mb.val
		switch k {
		case "index", obfuscation:
		case "delta":
			d, ok := v.(*jsonObject)
			if !ok {
				continue // null: nothing to add
			}
			msg := snap.obj("message")
			if msg == nil {
				msg = newObject()
				snap.set("message", msg)
			}
			mergeDelta(msg, d)
		case "text":
			if s, ok := v.(string); ok {
				cur, there := snap.get("text")
				if !there || cur == nil {
					cur = ""
				}
				snap.set("text", concat(cur, s))
			}
		case "logprobs":
			if cur := snap.obj("logprobs"); cur != nil {
				if lp, ok := v.(*jsonObject); ok {
					mergeLists(cur, lp)
					continue
				}
			}
			keepLast(snap, k, v)
		default: // finish_reason, vLLM's stop_reason and token_ids, a newer field
			keepLast(snap, k, v)
		}
	}
	return nil
}

// mergeDelta folds a delta into the message accumulated so far, as
// openai-python's accumulate_delta does: strings concatenated, objects
// merged, lists of objects merged by their "index" (tool calls) and
// other lists appended. Members that name rather than add (index, type,
// id, role, name, format) take the delta's value: a server that repeats
// a tool call's id or name, the role, or (OpenRouter) a reasoning
// detail's format in every delta must not double it, as accumulate_delta
// does all but the first two.
func mergeDelta(acc, delta *jsonObject) {
	for _, mb := range delta.members {
		k, v := mb.key, mb.val
		if k == obfuscation {
			continue
		}
		cur, ok := acc.get(k)
		switch {
		case !ok || cur == nil:
			acc.set(k, deepCopy(v))
		case v == nil:
		default:
			acc.set(k, mergeValue(k, cur, v))
		}
	}
}

func mergeValue(k string, cur, v any) any {
	switch k {
	case "index", "type", "id", "role", "name", "format":
		return deepCopy(v)
	}
	switch c := cur.(type) {
	case string, *strings.Builder:
		if s, ok := v.(string); ok {
			return concat(c, s)
		}
	case *jsonObject:
		if o, ok := v.(*jsonObject); ok {
			mergeDelta(c, o)
			return c
		}
	case []any:
		if l, ok := v.([]any); ok {
			return mergeList(c, l)
		}
	}
	return deepCopy(v)
}

// concat appends s to a string being accumulated: the first time it
// becomes a *strings.Builder, which appendJSON and jsonObject.str read as
// its string, so that a thousand deltas cost no thousand copies.
func concat(cur any, s string) any {
	b, ok := cur.(*strings.Builder)
	if !ok {
		b = &strings.Builder{}
		b.WriteString(cur.(string))
	}
	b.WriteString(s)
	return b
}

// mergeList folds a delta's list: entries that all carry an integer
// "index" merge into the entry of that index, others are appended.
func mergeList(acc, delta []any) []any {
	for _, e := range delta {
		if _, ok := entryIndex(e); !ok {
			return append(acc, deepCopy(delta).([]any)...)
		}
	}
	for _, e := range delta {
		i, _ := entryIndex(e)
		at := slices.IndexFunc(acc, func(x any) bool { j, ok := entryIndex(x); return ok && j == i })
		if at < 0 {
			acc = append(acc, deepCopy(e))
			continue
		}
		mergeDelta(acc[at].(*jsonObject), e.(*jsonObject))
	}
	return acc
}

// entryIndex is a list entry's "index", ok false when it is not an
// object with an integer one.
func entryIndex(e any) (int, bool) {
	o, ok := e.(*jsonObject)
	if !ok {
		return 0, false
	}
	n, ok := o.val("index").(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(string(n))
	return i, err == nil
}

// mergeLists folds a chunk's logprobs into those accumulated: lists
// appended (each chunk carries its tokens'), other members as keepLast.
func mergeLists(acc, more *jsonObject) {
	for _, mb := range more.members {
		k := mb.key
		keepLast(acc, k, mb.val)
	}
}

// result is the assembled completion: the head's members in their order,
// choices by index, usage left out when no chunk had one.
func (a *accumulator) result() *jsonObject {
	out := a.head.reordered("id", "object", "created", "model")
	if u, ok := out.get("usage"); ok && u == nil {
		out.del("usage") // a stream without usage: the answer says none
	}
	idx := make([]int, 0, len(a.choices))
	for i := range a.choices {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	choices := make([]any, 0, len(idx))
	for _, i := range idx {
		choices = append(choices, a.finishChoice(a.choices[i]))
	}
	out.set("choices", choices)
	return out
}

// finishChoice puts a choice in the shape of a plain answer's: index,
// message (or text), logprobs, finish_reason, then the others.
func (a *accumulator) finishChoice(ch *jsonObject) *jsonObject {
	for _, k := range []string{"logprobs", "finish_reason"} {
		if _, ok := ch.get(k); !ok {
			ch.set(k, nil)
		}
	}
	if a.object == "text_completion" {
		if _, ok := ch.str("text"); !ok {
			ch.set("text", "")
		}
		return ch.reordered("index", "text", "logprobs", "finish_reason")
	}
	msg := ch.obj("message")
	if msg == nil {
		msg = newObject()
	}
	if r, _ := msg.str("role"); r == "" {
		msg.set("role", "assistant")
	}
	if _, ok := msg.get("content"); !ok {
		// OpenAI sends content in a stream's first delta; a server that
		// does not: null when the answer is a call or a refusal, as a
		// plain answer has it, "" otherwise.
		_, tools := msg.get("tool_calls")
		_, fn := msg.get("function_call")
		_, refusal := msg.str("refusal")
		if tools || fn || refusal {
			msg.set("content", nil)
		} else {
			msg.set("content", "")
		}
	}
	if calls, ok := msg.val("tool_calls").([]any); ok {
		msg.set("tool_calls", finishToolCalls(calls))
	}
	ch.set("message", msg.reordered("role", "content"))
	return ch.reordered("index", "message", "logprobs", "finish_reason")
}

// finishToolCalls is the accumulated calls as a plain answer lists them:
// in index order, without the index, each with a type and arguments.
func finishToolCalls(calls []any) []any {
	slices.SortStableFunc(calls, func(x, y any) int {
		i, _ := entryIndex(x)
		j, _ := entryIndex(y)
		return i - j
	})
	out := make([]any, 0, len(calls))
	for _, c := range calls {
		tc, ok := c.(*jsonObject)
		if !ok {
			out = append(out, c)
			continue
		}
		tc.del("index")
		if t, _ := tc.get("type"); t == nil {
			tc.set("type", "function")
		}
		if fn := tc.obj("function"); fn != nil {
			if args, _ := fn.get("arguments"); args == nil {
				fn.set("arguments", "")
			}
		}
		out = append(out, tc.reordered("id", "type", "function"))
	}
	return out
}
