package proxy

import (
	"encoding/json"

	"github.com/sluice-gw/sluice/internal/openai"
)

// sseError returns the OpenAI error object a backend's error answer
// carries as an event stream, nil when it carries none. vLLM and SGLang
// answer a streamed request they refuse (a prompt over the context
// length, a bad parameter) with a 4xx/5xx whose body is
// `data: {"error":{...}}` labelled text/event-stream: not JSON, so it
// would be wrapped whole (wrapForeign) and the client would lose the
// backend's message ("This model's maximum context length is ..."), which
// the same backend gives a request that did not stream as that JSON
// object. So the first event's data (all its data lines, as the SSE spec
// joins them) is the answer when it is a JSON object whose "error" is an
// object with a string "message", as the SDKs read an error; anything
// else, including a first event that is a chunk, is no error object and
// the body is wrapped as before. The bytes are the backend's own, as a
// JSON error body's are (relayed unchanged): only the framing goes.
func sseError(body []byte) []byte {
	events := openai.ParseSSE(body)
	if len(events) == 0 {
		return nil
	}
	data := events[0]
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil // not one JSON object (Unmarshal refuses trailing data)
	}
	var e map[string]json.RawMessage
	if err := json.Unmarshal(top["error"], &e); err != nil || e == nil {
		return nil
	}
	var msg *string // nil for a "message": null
	if err := json.Unmarshal(e["message"], &msg); err != nil || msg == nil {
		return nil
	}
	return data
}
