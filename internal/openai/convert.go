package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrNotConvertible is returned (wrapped) when an answer cannot be turned
// into the other form (JSON ↔ SSE): not a completion, or a stream with no
// chunks. A cache treats the lookup as a miss.
var ErrNotConvertible = errors.New("openai: answer cannot be converted to the other form")

// ErrStreamIncomplete is a stream that ended without its final [DONE].
var ErrStreamIncomplete = errors.New("the stream ended early")

// The wire shapes shared by completions and their chunks. Field order
// follows OpenAI's, so converted bytes look like the real thing.
type (
	toolCall struct {
		Index    *int          `json:"index,omitempty"` // chunks only
		ID       string        `json:"id,omitempty"`
		Type     string        `json:"type,omitempty"`
		Function *toolFunction `json:"function,omitempty"`
	}
	toolFunction struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	}
	message struct {
		Role      string     `json:"role,omitempty"`
		Content   *string    `json:"content,omitempty"`
		ToolCalls []toolCall `json:"tool_calls,omitempty"`
	}
	choice struct {
		Index        int             `json:"index"`
		Message      *message        `json:"message,omitempty"` // chat.completion
		Delta        *message        `json:"delta,omitempty"`   // chat.completion.chunk
		Text         *string         `json:"text,omitempty"`    // text_completion
		Logprobs     json.RawMessage `json:"logprobs"`
		FinishReason *string         `json:"finish_reason"`
	}
	completion struct {
		ID                string          `json:"id"`
		Object            string          `json:"object"`
		Created           int64           `json:"created"`
		Model             string          `json:"model"`
		SystemFingerprint *string         `json:"system_fingerprint,omitempty"`
		Choices           []choice        `json:"choices"`
		Usage             json.RawMessage `json:"usage,omitempty"`
	}
)

var jsonNull = json.RawMessage("null")

// accumulator folds a stream's chunks into one completion, choice by
// choice in the order they first appear.
type accumulator struct {
	out     completion
	byIndex map[int]*choice
	order   []int
	content map[int]*bytes.Buffer
	tools   map[int][]toolCall
}

// StreamToJSON assembles the events of a stream (ParseSSE) into the
// chat.completion (or text_completion) a plain request gets: per choice the
// concatenated content (or text) and tool-call arguments, the last
// finish_reason, and the last usage seen.
func StreamToJSON(events [][]byte) ([]byte, error) {
	a := accumulator{byIndex: map[int]*choice{}, content: map[int]*bytes.Buffer{}, tools: map[int][]toolCall{}}
	for _, ev := range events {
		if err := a.add(ev); err != nil {
			return nil, err
		}
	}
	if a.out.Object == "" {
		return nil, fmt.Errorf("%w: stream has no chunks", ErrNotConvertible)
	}
	return json.Marshal(a.result())
}

// add folds one chunk in.
func (a *accumulator) add(ev []byte) error {
	var c completion
	if err := json.Unmarshal(ev, &c); err != nil {
		return fmt.Errorf("%w: chunk: %v", ErrNotConvertible, err)
	}
	out := &a.out
	switch c.Object {
	case "chat.completion.chunk":
		out.Object = "chat.completion"
	case "text_completion":
		out.Object = "text_completion"
	default:
		return fmt.Errorf("%w: chunk object %q", ErrNotConvertible, c.Object)
	}
	if out.ID == "" {
		out.ID, out.Created, out.Model, out.SystemFingerprint = c.ID, c.Created, c.Model, c.SystemFingerprint
	}
	if len(c.Usage) > 0 && !bytes.Equal(c.Usage, jsonNull) {
		out.Usage = c.Usage
	}
	for _, ch := range c.Choices {
		a.addChoice(ch)
	}
	return nil
}

func (a *accumulator) addChoice(ch choice) {
	dst, ok := a.byIndex[ch.Index]
	if !ok {
		dst = &choice{Index: ch.Index, Logprobs: jsonNull}
		if a.out.Object == "chat.completion" {
			dst.Message = &message{Role: "assistant"}
		}
		a.byIndex[ch.Index], a.content[ch.Index] = dst, &bytes.Buffer{}
		a.order = append(a.order, ch.Index)
	}
	if ch.FinishReason != nil {
		dst.FinishReason = ch.FinishReason
	}
	if ch.Text != nil {
		a.content[ch.Index].WriteString(*ch.Text)
	}
	if d := ch.Delta; d != nil {
		if d.Role != "" && dst.Message != nil {
			dst.Message.Role = d.Role
		}
		if d.Content != nil {
			a.content[ch.Index].WriteString(*d.Content)
		}
		a.tools[ch.Index] = mergeToolCalls(a.tools[ch.Index], d.ToolCalls)
	}
}

// result is the assembled completion.
func (a *accumulator) result() completion {
	out := a.out
	out.Choices = []choice{}
	for _, i := range a.order {
		ch := a.byIndex[i]
		s := a.content[i].String()
		if ch.Message != nil {
			ch.Message.ToolCalls = a.tools[i]
			if s != "" || len(ch.Message.ToolCalls) == 0 {
				ch.Message.Content = &s
			}
		} else {
			ch.Text = &s
		}
		out.Choices = append(out.Choices, *ch)
	}
	return out
}

// mergeToolCalls folds streamed tool-call fragments: a fragment with a new
// index starts a call, later ones append to its arguments.
func mergeToolCalls(calls []toolCall, frags []toolCall) []toolCall {
	for _, f := range frags {
		idx := len(calls)
		if f.Index != nil {
			idx = *f.Index
		}
		for len(calls) <= idx {
			calls = append(calls, toolCall{Type: "function", Function: &toolFunction{}})
		}
		c := &calls[idx]
		if f.ID != "" {
			c.ID = f.ID
		}
		if f.Type != "" {
			c.Type = f.Type
		}
		if f.Function != nil {
			if f.Function.Name != "" {
				c.Function.Name = f.Function.Name
			}
			c.Function.Arguments += f.Function.Arguments
		}
	}
	return calls
}

// JSONToSSE turns a JSON completion into the SSE stream a streaming
// request gets: per choice, a role chunk, a content chunk (and tool-call
// chunk) and a finish chunk, then a usage chunk when includeUsage and the
// body has usage; with includeUsage every chunk carries "usage":null as
// OpenAI's do.
func JSONToSSE(body []byte, includeUsage bool) ([]byte, error) {
	var c completion
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("%w: body: %v", ErrNotConvertible, err)
	}
	var chunkObject string
	switch c.Object {
	case "chat.completion":
		chunkObject = "chat.completion.chunk"
	case "text_completion":
		chunkObject = "text_completion"
	default:
		return nil, fmt.Errorf("%w: object %q", ErrNotConvertible, c.Object)
	}
	w := chunkWriter{head: c, object: chunkObject, includeUsage: includeUsage}
	for _, ch := range c.Choices {
		for _, cs := range choiceChunks(chunkObject, ch) {
			if err := w.chunk(cs...); err != nil {
				return nil, err
			}
		}
	}
	if includeUsage && len(c.Usage) > 0 && !bytes.Equal(c.Usage, jsonNull) {
		if err := w.chunk(); err != nil {
			return nil, err
		}
	}
	w.b.WriteString("data: [DONE]\n\n")
	return w.b.Bytes(), nil
}

// chunkWriter writes the chunks of one converted completion.
type chunkWriter struct {
	b            bytes.Buffer
	head         completion // id, created, model, fingerprint and usage
	object       string
	includeUsage bool
}

// chunk writes one chunk with the given choices; none makes the usage
// chunk.
func (w *chunkWriter) chunk(ch ...choice) error {
	out := completion{
		ID: w.head.ID, Object: w.object, Created: w.head.Created, Model: w.head.Model,
		SystemFingerprint: w.head.SystemFingerprint, Choices: ch,
	}
	if out.Choices == nil {
		out.Choices = []choice{}
	}
	if w.includeUsage {
		out.Usage = jsonNull
	}
	for i := range out.Choices {
		if out.Choices[i].Logprobs == nil {
			out.Choices[i].Logprobs = jsonNull
		}
	}
	if len(ch) == 0 {
		out.Usage = w.head.Usage
	}
	data, err := json.Marshal(out)
	if err != nil {
		return err
	}
	writeEvent(&w.b, data)
	return nil
}

// choiceChunks is the chunks, in order, that stream one choice of a
// completion.
func choiceChunks(chunkObject string, ch choice) [][]choice {
	if chunkObject == "text_completion" {
		text, empty := "", ""
		if ch.Text != nil {
			text = *ch.Text
		}
		return [][]choice{
			{{Index: ch.Index, Text: &text, Logprobs: ch.Logprobs}},
			{{Index: ch.Index, Text: &empty, FinishReason: ch.FinishReason}},
		}
	}
	m := ch.Message
	if m == nil {
		m = &message{}
	}
	role, empty := m.Role, ""
	if role == "" {
		role = "assistant"
	}
	chunks := [][]choice{{{Index: ch.Index, Delta: &message{Role: role, Content: &empty}}}}
	if m.Content != nil && *m.Content != "" {
		chunks = append(chunks, []choice{{Index: ch.Index, Delta: &message{Content: m.Content}, Logprobs: ch.Logprobs}})
	}
	if len(m.ToolCalls) > 0 {
		calls := make([]toolCall, len(m.ToolCalls))
		for i, tc := range m.ToolCalls {
			idx := i
			calls[i] = tc
			calls[i].Index = &idx
		}
		chunks = append(chunks, []choice{{Index: ch.Index, Delta: &message{ToolCalls: calls}}})
	}
	return append(chunks, []choice{{Index: ch.Index, Delta: &message{}, FinishReason: ch.FinishReason}})
}
