package sim

import (
	"encoding/json"
	"strconv"
)

// respEventEncoder appends the SSE events of one streamed Responses answer:
// each is "event: TYPE\ndata: JSON\n\n", and every payload starts with
// "type" and "sequence_number", which counts from 0 across the stream as
// OpenAI's and vLLM's do. Token deltas, the hot path, are spliced from
// fixed pieces; the few other events go through encoding/json.
type respEventEncoder struct {
	seq       int
	deltaTail []byte // `,"item_id":…,"output_index":0,"content_index":0,"delta":"`
}

const deltaEventHead = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":"

func newRespEventEncoder(msgID string) respEventEncoder {
	idJSON, _ := json.Marshal(msgID) // a string always marshals
	t := make([]byte, 0, 96)
	t = append(t, `,"item_id":`...)
	t = append(t, idJSON...)
	t = append(t, `,"output_index":0,"content_index":0,"delta":"`...)
	return respEventEncoder{deltaTail: t}
}

// event appends one event whose payload is the fields of v (a struct
// marshalling to a non-empty JSON object) after type and sequence_number.
func (e *respEventEncoder) event(b []byte, typ string, v any) []byte {
	body := mustMarshal(v)
	b = append(b, "event: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: {\"type\":\""...)
	b = append(b, typ...)
	b = append(b, `","sequence_number":`...)
	b = strconv.AppendInt(b, int64(e.seq), 10)
	e.seq++
	b = append(b, ',')
	b = append(b, body[1:]...)
	return append(b, "\n\n"...)
}

// delta appends one response.output_text.delta event. text must need no
// JSON escaping (vocabulary words and spaces).
func (e *respEventEncoder) delta(b, text []byte) []byte {
	b = append(b, deltaEventHead...)
	b = strconv.AppendInt(b, int64(e.seq), 10)
	e.seq++
	b = append(b, e.deltaTail...)
	b = append(b, text...)
	return append(b, "\",\"logprobs\":[]}\n\n"...)
}

// Event payloads, minus type and sequence_number. The simulator's answer is
// one message (output_index 0) with one output_text part (content_index 0).
type responseEvent struct {
	Response responseObject `json:"response"`
}

// finalEvent is response.completed or response.incomplete, carrying the
// response JSON already built for the store.
type finalEvent struct {
	Response json.RawMessage `json:"response"`
}

type itemEvent struct {
	OutputIndex int           `json:"output_index"`
	Item        outputMessage `json:"item"`
}

type partEvent struct {
	ItemID       string     `json:"item_id"`
	OutputIndex  int        `json:"output_index"`
	ContentIndex int        `json:"content_index"`
	Part         outputText `json:"part"`
}

type textDoneEvent struct {
	ItemID       string     `json:"item_id"`
	OutputIndex  int        `json:"output_index"`
	ContentIndex int        `json:"content_index"`
	Text         string     `json:"text"`
	Logprobs     []struct{} `json:"logprobs"`
}
