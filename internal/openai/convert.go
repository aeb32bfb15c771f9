package openai

import (
	"encoding/json"
	"errors"
	"strconv"
)

// ErrNotConvertible is returned (wrapped) when an answer cannot be turned
// into the other form (JSON ↔ SSE): not a completion, or a stream with no
// chunks. A cache treats the lookup as a miss.
var ErrNotConvertible = errors.New("openai: answer cannot be converted to the other form")

// ErrStreamIncomplete is a stream that ended without its final [DONE].
var ErrStreamIncomplete = errors.New("the stream ended early")

// The two directions live in accumulate.go (stream → JSON, StreamToJSON)
// and replay.go (JSON → stream, JSONToSSE), on the order-keeping values
// of jsontree.go.

var jsonNull = json.RawMessage("null")

func jsonInt(i int) json.Number { return json.Number(strconv.Itoa(i)) }
