package openai

import (
	"bytes"
	"strings"
)

// API says which OpenAI API a request speaks, where the gateway reads it
// differently: the zero value is the chat family (chat completions,
// completions, embeddings), whose shapes ParseRequest knows.
type API uint8

const (
	APIChat API = iota
	// APIResponses is the Responses API (POST /v1/responses): "input" and
	// "instructions" for the prompt, max_output_tokens for the answer's
	// bound, and a stream of named events without [DONE] that ends with
	// the response's final state (ResponseEvent).
	APIResponses
)

// ResponsesPeek is what the gateway reads of a Responses API request
// beyond Peek: where its follow-ups must go and what it asks the backend
// to keep.
type ResponsesPeek struct {
	// PreviousResponseID continues a stored response, which only the
	// backend that made it holds; "" when absent.
	PreviousResponseID string
	// Store: the backend keeps the response (the API's default, true).
	Store bool
	// Background: the backend answers at once and works later.
	Background bool
}

// responsesActedOn are the top-level fields of a Responses API request
// the gateway reads, refused twice or in another case as actedOn are.
var responsesActedOn = [...]string{"model", "stream", "max_output_tokens", "input", "instructions",
	"previous_response_id", "store", "background", "temperature"}

// ParseResponsesRequest is ParseRequest for a Responses API request: the
// model, stream, max_output_tokens (Peek.MaxTokens: the answer's bound, as
// max_tokens is chat's), the types of input (a string or an array of
// items) and instructions (a string), and what ResponsesPeek holds. The
// scan is ParseRequest's: keys read case-sensitively, a duplicate or a
// case-folded twin of a field refused; every error is an *Error (400)
// naming the field. Peek.Deterministic is never set: responses have ids
// and may be stored, so none is cached.
func ParseResponsesRequest(body []byte) (Peek, ResponsesPeek, error) {
	p, rp := Peek{API: APIResponses}, ResponsesPeek{Store: true}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return p, rp, BadRequest("invalid_json", "the request body is empty; it must be a JSON object")
	}
	var top topMembers
	notes := scanNotes{members: &top, utf8: true}
	if !scanJSON(body, &notes) {
		return p, rp, syntaxError(body)
	}
	if notes.badUTF8 > 0 {
		return p, rp, notUTF8(body, notes.badUTF8-1)
	}
	if trimmed[0] != '{' {
		return p, rp, ErrNotObject
	}
	noted := !top.over
	m := newMembers(trimmed)
	var seen uint16
	for k := 0; ; k++ {
		rawKey, val, ok := member(body, &top, noted, k, &m)
		if !ok {
			break
		}
		key := decodeKey(rawKey)
		idx := responsesField(key)
		if idx < 0 {
			for _, f := range responsesActedOn {
				if strings.EqualFold(key, f) {
					return p, rp, ambiguousKey(key, f)
				}
			}
			continue
		}
		if seen&(1<<idx) != 0 {
			return p, rp, duplicateKey(key)
		}
		seen |= 1 << idx
		if isNull(val) {
			continue
		}
		var err error
		switch key {
		case "model":
			p.Model, err = stringValue(key, val)
		case "stream":
			p.Stream, err = boolValue(key, val)
		case "max_output_tokens":
			p.MaxTokens, err = intValue(key, val, 0, MaxTokensLimit)
		case "input":
			if val[0] != '"' && val[0] != '[' {
				err = typeError(key, "a string or an array of input items")
			}
		case "instructions":
			_, err = stringValue(key, val)
		case "previous_response_id":
			rp.PreviousResponseID, err = stringValue(key, val)
		case "store":
			rp.Store, err = boolValue(key, val)
		case "background":
			rp.Background, err = boolValue(key, val)
		case "temperature":
			_, err = numberValue(key, val)
		}
		if err != nil {
			return p, rp, err
		}
	}
	return p, rp, nil
}

func responsesField(key string) int {
	for i, f := range responsesActedOn {
		if key == f {
			return i
		}
	}
	return -1
}

// ResponseFacts is what the gateway reads of a Responses API response
// object: its id (where follow-ups must go) and its usage.
type ResponseFacts struct {
	ID string
	// IsResponse: the object says "object": "response". A response that
	// failed carries a non-null "error" member and is still the backend's
	// answer, not an error object in a 2xx.
	IsResponse bool
	Usage      Usage
	UsageKnown bool
}

// ReadResponse reads a response object, obj, valid JSON: its top-level
// "id", "object" and "usage" (input_tokens and output_tokens, read as
// chat's prompt_tokens and completion_tokens).
func ReadResponse(obj []byte) (f ResponseFacts) {
	obj = bytes.TrimLeft(obj, " \t\r\n")
	if len(obj) == 0 || obj[0] != '{' {
		return f
	}
	m := newMembers(obj)
	for {
		key, val, ok := m.next()
		if !ok {
			return f
		}
		switch string(key) {
		case "id":
			if len(val) > 0 && val[0] == '"' {
				f.ID, _ = stringValue("id", val)
			}
		case "object":
			f.IsResponse = string(val) == `"response"`
		case "usage":
			f.Usage, f.UsageKnown = responseUsage(val)
		}
	}
}

// responseUsage reads a Responses usage object, val (valid JSON).
func responseUsage(val []byte) (Usage, bool) {
	if len(val) == 0 || val[0] != '{' {
		return Usage{}, false
	}
	var u Usage
	var in, out bool
	m := newMembers(val)
	for {
		key, v, ok := m.next()
		if !ok {
			if u.PromptTokens < 0 || u.CompletionTokens < 0 { // no real count (intAfter)
				return Usage{}, false
			}
			return u, in || out
		}
		switch string(key) {
		case "input_tokens":
			u.PromptTokens, in = intAfter(v, nil)
		case "output_tokens":
			u.CompletionTokens, out = intAfter(v, nil)
		}
	}
}

// FindResponseUsage is FindUsage for the end of a Responses API answer too
// large to hold whole: the last "usage" object in tail, whose top-level
// input_tokens and output_tokens it reads (its nested *_details objects
// would end FindUsage's search early). The object is bounded by tail's
// end when it does not close within it.
func FindResponseUsage(tail []byte) (Usage, bool) {
	for end := len(tail); ; {
		i := lastUsageKey(tail[:end])
		if i < 0 {
			return Usage{}, false
		}
		obj := bytes.TrimLeft(tail[i+len(usageKey):], " \t\r\n")
		if len(obj) > 0 && obj[0] == '{' {
			obj = obj[:skipValue(obj, 0)]
			if !validJSON(obj) {
				return Usage{}, false
			}
			return responseUsage(obj)
		}
		end = i // a "usage" that is no object (a metadata string): look before it
	}
}

// EventKind sorts the events of a Responses API stream by what the gateway
// does with them.
type EventKind uint8

const (
	// EventOutput is every event made as the model generates (output
	// items, content parts, deltas): the first is the stream's first token.
	EventOutput EventKind = iota
	// EventLifecycle is response.created, response.in_progress and
	// response.queued: sent before the model produced anything.
	EventLifecycle
	// EventFinal ends the stream: response.completed, response.incomplete
	// or response.failed (the response's final state, with its usage).
	EventFinal
	// EventError is the "error" event: the stream failed in band.
	EventError
)

// ResponseEvent reads a Responses API stream event's data (a valid JSON
// object): its kind, by its "type", and for a lifecycle or final event the
// response object it carries (nil when none). An event without a type is
// EventOutput: it came after the start, so it tells the stream moves.
func ResponseEvent(data []byte) (kind EventKind, response []byte) {
	m := newMembers(data)
	kind = EventOutput
	typed := false
	for {
		key, val, ok := m.next()
		if !ok {
			return kind, response
		}
		switch string(key) {
		case "type":
			if typed {
				continue
			}
			typed = true
			kind = eventKind(val)
			if kind == EventOutput || kind == EventError {
				return kind, nil // only lifecycle and final events carry the response
			}
			if response != nil {
				return kind, response
			}
		case "response":
			response = val
			if typed {
				return kind, response
			}
		}
	}
}

func eventKind(quotedType []byte) EventKind {
	switch string(quotedType) {
	case `"response.created"`, `"response.in_progress"`, `"response.queued"`:
		return EventLifecycle
	case `"response.completed"`, `"response.incomplete"`, `"response.failed"`:
		return EventFinal
	case `"error"`:
		return EventError
	}
	return EventOutput
}

// ResponseFromStream is AccumulateStream for a whole Responses API stream:
// the response object its final event carries, which is what a plain
// request gets. A stream without a final event is ErrStreamIncomplete.
func ResponseFromStream(stream []byte) ([]byte, error) {
	for _, data := range ParseSSE(stream) {
		if !ValidObject(data) {
			continue
		}
		if kind, resp := ResponseEvent(data); kind == EventFinal && resp != nil {
			return bytes.Clone(resp), nil
		}
	}
	return nil, ErrStreamIncomplete
}
