package openai

import (
	"bytes"
	"strings"
)

// ModelEndpoint is one of the model-addressed JSON endpoints beyond the
// chat family and the Responses API: vLLM's pooling family (rerank, score,
// classify, pooling), its tokenizer endpoints, and OpenAI's moderations.
// Each takes a JSON object naming a model (the audio endpoints: a
// multipart form) and answers one JSON object; none streams through the
// gateway. The zero value is none of them.
type ModelEndpoint uint8

const (
	EndpointNone ModelEndpoint = iota
	// EndpointRerank: /v1/rerank, /rerank, /v2/rerank (Jina and Cohere
	// shape: query, documents, top_n).
	EndpointRerank
	// EndpointScore: /v1/score, /score (text_1, text_2).
	EndpointScore
	// EndpointClassify: /classify (input, or messages).
	EndpointClassify
	// EndpointPooling: /pooling (input, or messages).
	EndpointPooling
	// EndpointModerations: /v1/moderations (input).
	EndpointModerations
	// EndpointTokenize: /tokenize (prompt, or messages). Runs on the
	// server's CPU, not its engine.
	EndpointTokenize
	// EndpointDetokenize: /detokenize (tokens). Runs on the server's CPU.
	EndpointDetokenize
	// EndpointTranscriptions: /v1/audio/transcriptions, multipart/form-data
	// (ParseMultipartRequest).
	EndpointTranscriptions
	// EndpointTranslations: /v1/audio/translations, as transcriptions.
	EndpointTranslations
)

// EndpointOf is the endpoint served at path, or EndpointNone: the paths
// are a fixed set, so a path label made from them is bounded.
func EndpointOf(path string) ModelEndpoint {
	switch path {
	case "/v1/rerank", "/rerank", "/v2/rerank":
		return EndpointRerank
	case "/v1/score", "/score":
		return EndpointScore
	case "/classify":
		return EndpointClassify
	case "/pooling":
		return EndpointPooling
	case "/v1/moderations":
		return EndpointModerations
	case "/tokenize":
		return EndpointTokenize
	case "/detokenize":
		return EndpointDetokenize
	case "/v1/audio/transcriptions":
		return EndpointTranscriptions
	case "/v1/audio/translations":
		return EndpointTranslations
	}
	return EndpointNone
}

// CPUOnly reports whether the endpoint's work is done on the server's CPU
// (its tokenizer), never in the engine's batch on the GPU.
func (e ModelEndpoint) CPUOnly() bool { return e == EndpointTokenize || e == EndpointDetokenize }

// Multipart reports whether the endpoint's body is multipart/form-data
// (ParseMultipartRequest), not JSON (ParseEndpointRequest).
func (e ModelEndpoint) Multipart() bool {
	return e == EndpointTranscriptions || e == EndpointTranslations
}

// inputField is a field whose text the server feeds the model (or its
// tokenizer), read for its type and size.
type inputField struct {
	name string
	want string // the type error's "must be ..."
	ok   func(v []byte) bool
}

// endpointSpec is what a request to an endpoint must hold beyond its
// model: its input fields, all required, or (either) exactly one of them.
type endpointSpec struct {
	fields []inputField
	either bool
}

var (
	stringOrObject = func(v []byte) bool { return v[0] == '"' || v[0] == '{' }
	isArray        = func(v []byte) bool { return v[0] == '[' }
	isString       = func(v []byte) bool { return v[0] == '"' }
	stringOrArray  = func(v []byte) bool { return v[0] == '"' || v[0] == '[' }
	// A list of texts, one text, or (vLLM) a multimodal content object.
	textsOrObject = func(v []byte) bool { return (v[0] == '[' && arrayOf(v, isString)) || v[0] == '"' || v[0] == '{' }
	stringsOrObj  = func(v []byte) bool { return (v[0] == '[' && arrayOf(v, isString)) || v[0] == '{' }
	integers      = func(v []byte) bool {
		return v[0] == '[' && arrayOf(v, func(e []byte) bool { return isNumber(e) && !bytes.ContainsAny(e, ".eE") })
	}
	messagesField = inputField{"messages", "an array of messages", isArray}
)

// endpointSpecs follow vLLM's request models (vllm/entrypoints/pooling
// and serve/tokenize protocols) and OpenAI's moderations.
var endpointSpecs = [...]endpointSpec{
	EndpointRerank: {fields: []inputField{
		{"query", "a string or a multimodal content object", stringOrObject},
		{"documents", "an array of strings or a multimodal content object", stringsOrObj}}},
	EndpointScore: {fields: []inputField{
		{"text_1", "a string, an array of strings or a multimodal content object", textsOrObject},
		{"text_2", "a string, an array of strings or a multimodal content object", textsOrObject}}},
	EndpointClassify: {either: true, fields: []inputField{
		{"input", "a string or an array", stringOrArray}, messagesField}},
	EndpointPooling: {either: true, fields: []inputField{
		{"input", "a string or an array", stringOrArray}, messagesField}},
	EndpointModerations: {fields: []inputField{
		{"input", "a string or an array", stringOrArray}}},
	EndpointTokenize: {either: true, fields: []inputField{
		{"prompt", "a string", isString}, messagesField}},
	EndpointDetokenize: {fields: []inputField{
		{"tokens", "an array of integers", integers}}},
}

// maxInputBytes bounds ParseEndpointRequest's input size: a rerank's
// query counts once per document, so the product is bounded where it
// could not matter (admission.EstimateCost saturates far below it).
const maxInputBytes = 1 << 40

// ParseEndpointRequest reads a request to a JSON endpoint e (not
// EndpointNone, not Multipart):
// its model, and inputBytes, the bytes of text the server will prefill (a
// rerank's query once per document, a score's single text_1 once per
// text_2), from which admission estimates its tokens. The scan is
// ParseRequest's: keys read case-sensitively, a duplicate or a
// case-folded twin of a field read here refused; the input fields are
// checked for their type and presence. Every error is an *Error (400)
// naming the field. The Peek never streams and is never deterministic:
// these answers are neither relayed as streams nor cached.
func ParseEndpointRequest(e ModelEndpoint, body []byte) (p Peek, inputBytes int, err error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return p, 0, BadRequest("invalid_json", "the request body is empty; it must be a JSON object")
	}
	var top topMembers
	notes := scanNotes{members: &top, utf8: true}
	if !scanJSON(body, &notes) {
		return p, 0, syntaxError(body)
	}
	if notes.badUTF8 > 0 {
		return p, 0, notUTF8(body, notes.badUTF8-1)
	}
	if trimmed[0] != '{' {
		return p, 0, ErrNotObject
	}
	if int(e) >= len(endpointSpecs) || e == EndpointNone {
		return p, 0, BadRequest("invalid_request", "this endpoint does not take a JSON body")
	}
	spec := &endpointSpecs[e]
	var (
		seen, have uint8 // bit 0: model; bit i+1: spec.fields[i]; have: not null
		vals       [2][]byte
		noted      = !top.over
		m          = newMembers(trimmed)
	)
	for k := 0; ; k++ {
		rawKey, val, ok := member(body, &top, noted, k, &m)
		if !ok {
			break
		}
		key := decodeKey(rawKey)
		idx, f := -1, (*inputField)(nil)
		if key == "model" {
			idx = 0
		}
		for i := range spec.fields {
			if key == spec.fields[i].name {
				idx, f = i+1, &spec.fields[i]
			}
		}
		if idx < 0 {
			if strings.EqualFold(key, "model") {
				return p, 0, ambiguousKey(key, "model")
			}
			for i := range spec.fields {
				if strings.EqualFold(key, spec.fields[i].name) {
					return p, 0, ambiguousKey(key, spec.fields[i].name)
				}
			}
			continue
		}
		if seen&(1<<idx) != 0 {
			return p, 0, duplicateKey(key)
		}
		seen |= 1 << idx
		if isNull(val) {
			continue // absent, as Python's None
		}
		have |= 1 << idx
		if idx == 0 {
			if p.Model, err = stringValue(key, val); err != nil {
				return Peek{}, 0, err
			}
			continue
		}
		if !f.ok(val) {
			return Peek{}, 0, typeError(f.name, f.want)
		}
		vals[idx-1] = val
	}
	if err := spec.present(have >> 1); err != nil {
		return Peek{}, 0, err
	}
	return p, inputSize(e, vals), nil
}

// present checks that the fields whose bits are set in have are those the
// spec requires.
func (s *endpointSpec) present(have uint8) error {
	if s.either {
		a, b := s.fields[0].name, s.fields[1].name
		switch have {
		case 0:
			return missingParam(a, "send "+a+" or "+b)
		case 3:
			e := BadRequest("invalid_value", "send either "+a+" or "+b+", not both")
			e.Param = b
			return e
		}
		return nil
	}
	for i, f := range s.fields {
		if have&(1<<i) == 0 {
			return missingParam(f.name, f.name+" is required")
		}
	}
	return nil
}

func missingParam(param, msg string) *Error {
	e := BadRequest("missing_required_parameter", msg)
	e.Param = param
	return e
}

// inputSize is the bytes of text a request's input fields (vals, in the
// spec's order, nil when absent) have the server prefill.
func inputSize(e ModelEndpoint, vals [2][]byte) int {
	switch e {
	case EndpointRerank: // the query is paired with each document
		n, docs := texts(vals[1])
		return min(n*len(vals[0]), maxInputBytes) + docs
	case EndpointScore: // one text_1 is paired with each text_2
		n1, s1 := texts(vals[0])
		n2, s2 := texts(vals[1])
		if n1 == 1 {
			return min(n2*s1, maxInputBytes) + s2
		}
		return s1 + s2
	}
	return len(vals[0]) + len(vals[1])
}

// texts counts the texts of a value (an array's elements; one for any
// other value) and their bytes.
func texts(v []byte) (n, size int) {
	if len(v) == 0 || v[0] != '[' {
		return 1, len(v)
	}
	eachElement(v, func(e []byte) bool { n++; size += len(e); return true })
	return n, size
}

// arrayOf reports whether every element of the array v (valid JSON) is ok.
func arrayOf(v []byte, ok func(e []byte) bool) bool { return eachElement(v, ok) }

// eachElement calls f on each element of the array v (valid JSON) until f
// returns false; it returns whether none did.
func eachElement(v []byte, f func(e []byte) bool) bool {
	i := skipSpace(v, 1)
	for i < len(v) && v[i] != ']' {
		end := skipValue(v, i)
		if !f(v[i:end]) {
			return false
		}
		i = skipSpace(v, end)
		if i < len(v) && v[i] == ',' {
			i = skipSpace(v, i+1)
		}
	}
	return true
}
