package openai

import (
	"bytes"
	"encoding/json"
)

// ParseSSE collects the data payloads of an SSE stream as read from a
// backend, in order. Comments, other fields and [DONE] are dropped; a
// multi-line data field is joined with "\n" as the SSE spec says.
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

// StreamComplete reports whether a relayed SSE answer is whole: OpenAI
// streams end with "data: [DONE]", and one cut short (the backend or the
// connection failed mid-way) lacks it.
func StreamComplete(stream []byte) bool { return bytes.Contains(stream, doneEvent) }

var doneEvent = []byte("data: [DONE]")

// AccumulateStream turns a whole SSE answer into the JSON object a plain
// request gets (StreamToJSON of its events): for callers that store
// answers whole, such as async jobs. A stream without its final [DONE]
// is ErrStreamIncomplete.
func AccumulateStream(stream []byte) ([]byte, error) {
	if !StreamComplete(stream) {
		return nil, ErrStreamIncomplete
	}
	return StreamToJSON(ParseSSE(stream))
}

// EventsToSSE writes events (as ParseSSE returns them) in OpenAI's
// framing, "data: <json>\n\n" each, then "data: [DONE]\n\n". Usage-only
// chunks (empty choices, the one stream_options.include_usage adds) are
// dropped unless includeUsage; a stream without usage cannot gain it.
func EventsToSSE(events [][]byte, includeUsage bool) []byte {
	var b bytes.Buffer
	for _, ev := range events {
		if !includeUsage && usageOnly(ev) {
			continue
		}
		writeEvent(&b, ev)
	}
	b.WriteString("data: [DONE]\n\n")
	return b.Bytes()
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
