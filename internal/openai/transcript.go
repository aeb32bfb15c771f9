package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// TranscriptDone reports whether data, a valid JSON object (a streamed
// transcription's event), is OpenAI's final transcription event,
// {"type":"transcript.text.done","text":...,"usage":...}: a
// gpt-4o-transcribe stream ends with it, and nothing says a [DONE]
// follows (vLLM's streams end with [DONE] instead). Only the top-level
// "type" is read, so a delta that quotes the name in its text is not one;
// OpenAI writes "type" first, so a delta costs one member's scan.
func TranscriptDone(data []byte) bool {
	m := newMembers(data)
	for {
		key, val, ok := m.next()
		if !ok {
			return false
		}
		if string(key) == "type" {
			return string(val) == `"transcript.text.done"`
		}
	}
}

// transcriptEvent is what TranscriptToJSON reads of a streamed
// transcription's event, in either backend's format: OpenAI's
// {"type":"transcript.text.delta","delta":...} and
// {"type":"transcript.text.done","text":...,"usage":...}, or vLLM's
// {"object":"transcription.chunk" (or "translation.chunk"),
// "choices":[{"delta":{"content":...}}],"usage":{"prompt_tokens":...}}.
type transcriptEvent struct {
	Type    string  `json:"type"`
	Delta   *string `json:"delta"`
	Text    *string `json:"text"`
	Object  string  `json:"object"`
	Choices []struct {
		Delta struct {
			Content *string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// chatUsage is vLLM's usage chunk (UsageInfo).
type chatUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// transcription is the JSON a plain transcription request gets.
type transcription struct {
	Text  string          `json:"text"`
	Usage json.RawMessage `json:"usage,omitempty"`
}

// TranscriptToJSON assembles a whole streamed transcription (the SSE
// bytes) into the JSON a plain transcription or translation request
// gets, {"text":...} with "usage" when the stream reported one: for a
// backend that streams although the request did not ask it to. OpenAI's
// stream is whole at transcript.text.done, which is the answer but its
// "type" (text, usage, the logprobs include[]=logprobs asks for, a newer
// member); vLLM's at [DONE], the text its chunks' content
// deltas, its usage chunk's tokens written in OpenAI's transcription
// shape ({"type":"tokens","input_tokens":...,"output_tokens":...}), which
// the SDKs decode. A stream cut short, carrying an error, mixing the
// formats, or with events of neither is ErrNotConvertible (or
// ErrStreamIncomplete).
func TranscriptToJSON(stream []byte) ([]byte, error) {
	var (
		text             strings.Builder
		out              transcription
		fromOpenAI, vllm bool
		done             bool
		doneEvent        []byte // OpenAI's transcript.text.done
	)
	for _, ev := range ParseSSE(stream) {
		var e transcriptEvent
		if err := json.Unmarshal(ev, &e); err != nil {
			return nil, fmt.Errorf("%w: transcription event: %v", ErrNotConvertible, err)
		}
		if len(e.Error) > 0 || e.Object == "error" {
			return nil, fmt.Errorf("%w: the stream carries an error", ErrNotConvertible)
		}
		if done {
			return nil, fmt.Errorf("%w: an event after transcript.text.done", ErrNotConvertible)
		}
		switch {
		case e.Type == "transcript.text.delta" && e.Delta != nil:
			fromOpenAI = true
			text.WriteString(*e.Delta)
		case e.Type == "transcript.text.done" && e.Text != nil:
			fromOpenAI, done, doneEvent = true, true, ev
		case strings.HasPrefix(e.Type, "transcript.text."):
			fromOpenAI = true // another of OpenAI's events (a diarized segment): not in the plain answer
		case e.Type == "" && (e.Object == "transcription.chunk" || e.Object == "translation.chunk"):
			vllm = true
			for _, c := range e.Choices {
				if c.Delta.Content != nil {
					text.WriteString(*c.Delta.Content)
				}
			}
			if usable(e.Usage) {
				var u chatUsage
				if err := json.Unmarshal(e.Usage, &u); err != nil {
					return nil, fmt.Errorf("%w: usage chunk: %v", ErrNotConvertible, err)
				}
				out.Usage, _ = json.Marshal(struct {
					Type         string `json:"type"`
					InputTokens  int    `json:"input_tokens"`
					OutputTokens int    `json:"output_tokens"`
					TotalTokens  int    `json:"total_tokens"`
				}{"tokens", u.PromptTokens, u.CompletionTokens, u.TotalTokens})
			}
		default:
			return nil, fmt.Errorf("%w: not a transcription event", ErrNotConvertible)
		}
	}
	switch {
	case fromOpenAI == vllm: // neither, or both
		return nil, fmt.Errorf("%w: not one transcription stream", ErrNotConvertible)
	case fromOpenAI && !done && !StreamComplete(stream), vllm && !StreamComplete(stream):
		return nil, ErrStreamIncomplete
	}
	if fromOpenAI && done {
		// The done event is the answer but its type: text, usage, and
		// the logprobs include[]=logprobs asked for (dropped before).
		o, err := parseObject(doneEvent)
		if err != nil {
			return nil, fmt.Errorf("%w: transcription event: %w", ErrNotConvertible, err)
		}
		o.del("type")
		if u, ok := o.get("usage"); ok && u == nil {
			o.del("usage")
		}
		return appendJSON(nil, o), nil
	}
	out.Text = text.String()
	return json.Marshal(out)
}

// usable reports a usage member that is there and not null.
func usable(u json.RawMessage) bool { return len(u) > 0 && !bytes.Equal(u, jsonNull) }
