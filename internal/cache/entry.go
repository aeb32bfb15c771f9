package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Entry is a cached answer in a form that replays both as a JSON response
// and as an SSE stream. Exactly one of Body (a non-streaming response) and
// Events (a streamed one) is set.
type Entry struct {
	Status      int
	ContentType string    // of the original response
	Stored      time.Time // when the backend answered; for the Age header
	// Fresh is when the entry stops being fresh; past it, and while the
	// level still holds it (stale-while-revalidate), it is served stale.
	// Zero: fresh for as long as it is stored.
	Fresh time.Time
	// Body is the full JSON body of a non-streaming response.
	Body []byte
	// Events are the data payloads of a stream's SSE events in order, each
	// without "data: " and the blank line, and without the final [DONE].
	Events [][]byte
}

// entryOverhead approximates the bytes an Entry costs beyond its payload.
const entryOverhead = 96

// Size is the entry's approximate memory footprint in bytes.
func (e *Entry) Size() int {
	n := entryOverhead + len(e.ContentType) + len(e.Body)
	for _, ev := range e.Events {
		n += len(ev) + 24
	}
	return n
}

// Stale reports whether the entry is past its freshness at now.
func (e *Entry) Stale(now time.Time) bool { return !e.Fresh.IsZero() && now.After(e.Fresh) }

// IsStream reports whether the entry holds a streamed answer.
func (e *Entry) IsStream() bool { return e.Body == nil && e.Events != nil }

// Age is how long ago the answer was stored, in whole seconds, never
// negative: the value of the Age header.
func (e *Entry) Age(now time.Time) int {
	if e.Stored.IsZero() || now.Before(e.Stored) {
		return 0
	}
	return int(now.Sub(e.Stored) / time.Second)
}

// ParseSSE collects the data payloads of an SSE stream as read from the
// backend, for Entry.Events. Comments, other fields and [DONE] are dropped;
// a multi-line data field is joined with "\n" as the SSE spec says.
func ParseSSE(stream []byte) [][]byte {
	events := [][]byte{}
	var data []byte
	have := false
	flush := func() {
		if have && string(data) != "[DONE]" {
			events = append(events, data)
		}
		data, have = nil, false
	}
	for len(stream) > 0 {
		line := stream
		if i := bytes.IndexAny(stream, "\r\n"); i >= 0 {
			line = stream[:i]
			if stream[i] == '\r' && i+1 < len(stream) && stream[i+1] == '\n' {
				i++
			}
			stream = stream[i+1:]
		} else {
			stream = nil
		}
		if len(line) == 0 {
			flush()
			continue
		}
		v, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		v = bytes.TrimPrefix(v, []byte(" "))
		if have {
			data = append(append(data, '\n'), v...)
		} else {
			data, have = append([]byte(nil), v...), true
		}
	}
	flush()
	return events
}

// ErrNotReplayable is returned (wrapped) when an entry cannot be converted
// to the other form; the caller should treat the lookup as a miss.
var ErrNotReplayable = errors.New("cache: entry cannot be replayed in this form")

// The wire shapes shared by completions and their chunks. Field order
// follows OpenAI's, so replayed bytes look like the real thing.
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

// ToJSON returns the body of a non-streaming response: Body as stored, or,
// for a stream, a chat.completion (or text_completion) assembled from the
// chunks: per choice the concatenated content (or text) and tool-call
// arguments, the last finish_reason, and the last usage seen.
func (e *Entry) ToJSON() ([]byte, error) {
	if !e.IsStream() {
		return e.Body, nil
	}
	var out completion
	byIndex := map[int]*choice{}
	var order []int
	content := map[int]*bytes.Buffer{}
	tools := map[int][]toolCall{}
	for _, ev := range e.Events {
		var c completion
		if err := json.Unmarshal(ev, &c); err != nil {
			return nil, fmt.Errorf("%w: chunk: %v", ErrNotReplayable, err)
		}
		switch c.Object {
		case "chat.completion.chunk":
			out.Object = "chat.completion"
		case "text_completion":
			out.Object = "text_completion"
		default:
			return nil, fmt.Errorf("%w: chunk object %q", ErrNotReplayable, c.Object)
		}
		if out.ID == "" {
			out.ID, out.Created, out.Model, out.SystemFingerprint = c.ID, c.Created, c.Model, c.SystemFingerprint
		}
		if len(c.Usage) > 0 && !bytes.Equal(c.Usage, jsonNull) {
			out.Usage = c.Usage
		}
		for _, ch := range c.Choices {
			dst, ok := byIndex[ch.Index]
			if !ok {
				dst = &choice{Index: ch.Index, Logprobs: jsonNull}
				if out.Object == "chat.completion" {
					dst.Message = &message{Role: "assistant"}
				}
				byIndex[ch.Index], content[ch.Index] = dst, &bytes.Buffer{}
				order = append(order, ch.Index)
			}
			if ch.FinishReason != nil {
				dst.FinishReason = ch.FinishReason
			}
			if ch.Text != nil {
				content[ch.Index].WriteString(*ch.Text)
			}
			if d := ch.Delta; d != nil {
				if d.Role != "" && dst.Message != nil {
					dst.Message.Role = d.Role
				}
				if d.Content != nil {
					content[ch.Index].WriteString(*d.Content)
				}
				tools[ch.Index] = mergeToolCalls(tools[ch.Index], d.ToolCalls)
			}
		}
	}
	if out.Object == "" {
		return nil, fmt.Errorf("%w: stream has no chunks", ErrNotReplayable)
	}
	out.Choices = []choice{}
	for _, i := range order {
		ch := byIndex[i]
		s := content[i].String()
		if ch.Message != nil {
			ch.Message.ToolCalls = tools[i]
			if s != "" || len(ch.Message.ToolCalls) == 0 {
				ch.Message.Content = &s
			}
		} else {
			ch.Text = &s
		}
		out.Choices = append(out.Choices, *ch)
	}
	return json.Marshal(out)
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

// ToSSE returns the entry as an SSE response body in OpenAI's framing
// ("data: <json>\n\n" per event, then "data: [DONE]\n\n").
//
// A stored stream is replayed as it was, except that usage-only chunks
// (empty choices) are dropped unless includeUsage; a stream stored without
// usage cannot gain it. A stored JSON completion becomes, per choice, a role
// chunk, a content chunk (and tool-call chunk) and a finish chunk, then a
// usage chunk when includeUsage and the body has usage; with includeUsage
// every chunk carries "usage":null as OpenAI's do.
func (e *Entry) ToSSE(includeUsage bool) ([]byte, error) {
	var b bytes.Buffer
	if e.IsStream() {
		for _, ev := range e.Events {
			if !includeUsage && usageOnly(ev) {
				continue
			}
			writeEvent(&b, ev)
		}
		b.WriteString("data: [DONE]\n\n")
		return b.Bytes(), nil
	}

	var c completion
	if err := json.Unmarshal(e.Body, &c); err != nil {
		return nil, fmt.Errorf("%w: body: %v", ErrNotReplayable, err)
	}
	var chunkObject string
	switch c.Object {
	case "chat.completion":
		chunkObject = "chat.completion.chunk"
	case "text_completion":
		chunkObject = "text_completion"
	default:
		return nil, fmt.Errorf("%w: object %q", ErrNotReplayable, c.Object)
	}
	usage := c.Usage
	chunk := func(ch ...choice) error {
		out := completion{
			ID: c.ID, Object: chunkObject, Created: c.Created, Model: c.Model,
			SystemFingerprint: c.SystemFingerprint, Choices: ch,
		}
		if out.Choices == nil {
			out.Choices = []choice{}
		}
		if includeUsage {
			out.Usage = jsonNull
		}
		for i := range out.Choices {
			if out.Choices[i].Logprobs == nil {
				out.Choices[i].Logprobs = jsonNull
			}
		}
		if len(ch) == 0 {
			out.Usage = usage
		}
		data, err := json.Marshal(out)
		if err != nil {
			return err
		}
		writeEvent(&b, data)
		return nil
	}
	for _, ch := range c.Choices {
		var chunks [][]choice
		if chunkObject == "text_completion" {
			text := ""
			if ch.Text != nil {
				text = *ch.Text
			}
			chunks = append(chunks, []choice{{Index: ch.Index, Text: &text, Logprobs: ch.Logprobs}})
			empty := ""
			chunks = append(chunks, []choice{{Index: ch.Index, Text: &empty, FinishReason: ch.FinishReason}})
		} else {
			m := ch.Message
			if m == nil {
				m = &message{}
			}
			role, empty := m.Role, ""
			if role == "" {
				role = "assistant"
			}
			chunks = append(chunks, []choice{{Index: ch.Index, Delta: &message{Role: role, Content: &empty}}})
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
			chunks = append(chunks, []choice{{Index: ch.Index, Delta: &message{}, FinishReason: ch.FinishReason}})
		}
		for _, cs := range chunks {
			if err := chunk(cs...); err != nil {
				return nil, err
			}
		}
	}
	if includeUsage && len(usage) > 0 && !bytes.Equal(usage, jsonNull) {
		if err := chunk(); err != nil {
			return nil, err
		}
	}
	b.WriteString("data: [DONE]\n\n")
	return b.Bytes(), nil
}

func writeEvent(b *bytes.Buffer, data []byte) {
	b.WriteString("data: ")
	b.Write(data)
	b.WriteString("\n\n")
}

// usageOnly reports whether a chunk is the final usage chunk of a stream
// sent because of stream_options.include_usage (empty choices, usage set).
func usageOnly(ev []byte) bool {
	var c struct {
		Choices []json.RawMessage `json:"choices"`
		Usage   json.RawMessage   `json:"usage"`
	}
	if json.Unmarshal(ev, &c) != nil {
		return false
	}
	return len(c.Choices) == 0 && len(c.Usage) > 0 && !bytes.Equal(c.Usage, jsonNull)
}
