package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

type endpointKind uint8

const (
	kindChat       endpointKind = iota // /v1/chat/completions
	kindCompletion                     // /v1/completions
	kindResponses                      // /v1/responses (parsed by parseResponsesRequest)
)

// request is what the simulator needs from a completion request. The token
// model is deliberately simple so load generators can predict it exactly:
// one prompt token per whitespace-separated word of the message contents (or
// prompt), and exactly maxTokens output tokens.
type request struct {
	kind         endpointKind
	model        string
	stream       bool
	includeUsage bool
	promptTokens int
	maxTokens    int
	promptHash   uint64   // hash of all prompt words; seeds the output text
	blocks       []uint64 // chained hash after each full block of BlockSize words
}

// wireRequest is the subset of the OpenAI request body the simulator reads.
type wireRequest struct {
	Model               string          `json:"model"`
	Messages            []wireMessage   `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

type wireMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type contentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// errBadRequest marks every parse failure; the handler maps it to 400.
var errBadRequest = errors.New("invalid request")

// requestError is a refused request as the client reads it: a message in
// the API's words and the field it names (param, "" for none). Never Go's
// decoder text, which names Go types ("cannot unmarshal string into Go
// struct field ..."): the gateway relays a backend's 400 to its clients.
type requestError struct{ param, msg string }

func (e *requestError) Error() string { return e.msg }
func (e *requestError) Unwrap() error { return errBadRequest }

// badRequest refuses a request naming param.
func badRequest(param, format string, args ...any) error {
	return &requestError{param: param, msg: fmt.Sprintf(format, args...)}
}

// badJSON describes err, from decoding field's value ("": the body), in
// JSON terms: which field has which wrong JSON type, or where the body
// stops being JSON.
func badJSON(field string, err error) error { return describeJSON(field, nil, err) }

// badBody is badJSON for a whole body decoded into the struct into points
// to: knowing the struct, it can say what a wrong-typed field must be.
func badBody(into any, err error) error { return describeJSON("", reflect.TypeOf(into), err) }

// describeJSON is badJSON and badBody: root is the type the body was
// decoded into, nil when unknown.
func describeJSON(field string, root reflect.Type, err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		// What the value must be is said only when the decoder's path names
		// the failing value itself: a field the caller names may hold it
		// deeper down, and Go's path has no index or key, so an array's
		// element or a map's value has the path of the array or the map
		// ({"messages":[7]} is "messages" with an object expected,
		// {"metadata":{"a":5}} is "metadata" with a string expected;
		// badMessage finds a message's index).
		say := field == "" && te.Field != "" && te.Type != nil && derefType(fieldType(root, te.Field)) == derefType(te.Type)
		if field == "" {
			field = te.Field // the path from the body's root, as the API spells it
		}
		kind, _, _ := strings.Cut(te.Value, " ") // "number 1e400" → "number"
		if field == "" {
			return badRequest("", "the body must be a JSON object, not a JSON %s", kind)
		}
		want := jsonKind(te.Type)
		switch {
		case say && want == "a number" && kind == "number":
			// A number Go refused as a float64 is one beyond its range (1e400).
			return badRequest(field, "%s is out of range (a JSON number too large for a double)", field)
		case say && want != "":
			return badRequest(field, "%s must be %s (got a JSON %s)", field, want, kind)
		}
		return badRequest(field, "%s has the wrong type (a JSON %s)", field, kind)
	case errors.As(err, &se):
		return badRequest("", "the body is not valid JSON (at byte %d)", se.Offset)
	default:
		return badRequest(field, "the body is not valid JSON")
	}
}

// badMessage names a message of the wrong type by its element's path, as
// OpenAI names it ("messages[1]", "messages[1].role"), where Go's decoder
// says "messages" or "messages.role", with no index; nil when err is not
// about a message. Only a refused body pays for finding the element (a
// second decode).
func badMessage(body []byte, err error) error {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) || (te.Field != "messages" && !strings.HasPrefix(te.Field, "messages.")) {
		return nil
	}
	var top struct {
		Messages []json.RawMessage `json:"messages"` // the member the first decode read: Go's matching
	}
	if json.Unmarshal(body, &top) != nil {
		return nil
	}
	for i, raw := range top.Messages {
		var m wireMessage
		if json.Unmarshal(raw, &m) == nil {
			continue
		}
		field := fmt.Sprintf("messages[%d]%s", i, strings.TrimPrefix(te.Field, "messages"))
		want := jsonKind(te.Type)
		if derefType(te.Type) == reflect.TypeOf(m) {
			want = "an object" // the element itself: a message
		}
		kind, _, _ := strings.Cut(te.Value, " ")
		if want == "" {
			return badRequest(field, "%s has the wrong type (a JSON %s)", field, kind)
		}
		return badRequest(field, "%s must be %s (got a JSON %s)", field, want, kind)
	}
	return nil
}

// fieldType is the type of the struct field at the decoder's dotted path
// from root (JSON names; an array on the way stands for its elements, as
// in the path), nil when the path does not lead to a field.
func fieldType(root reflect.Type, path string) reflect.Type {
	t := root
	for _, name := range strings.Split(path, ".") {
		t = derefType(t)
		for t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			t = derefType(t.Elem())
		}
		if t == nil || t.Kind() != reflect.Struct {
			return nil
		}
		var next reflect.Type
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if tag == name {
				next = f.Type
				break
			}
		}
		if next == nil {
			return nil
		}
		t = next
	}
	return t
}

// derefType is t without its pointers; nil stays nil.
func derefType(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// jsonKind is what a value decoded into t must be, in JSON's words ("an
// array", "a string"), so that a refusal says what is allowed; "" for a
// type it does not name (objects: see badJSON).
func jsonKind(t reflect.Type) string {
	t = derefType(t)
	if t == nil {
		return ""
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return ""
}

// parseRequest decodes a chat or text completion body. blockSize > 0 also
// computes the prefix-cache block chain; Instant mode passes 0 to skip it.
func parseRequest(kind endpointKind, body []byte, blockSize, defaultMaxTokens int) (request, error) {
	var wr wireRequest
	if err := json.Unmarshal(body, &wr); err != nil {
		if e := badMessage(body, err); e != nil {
			return request{}, e
		}
		return request{}, badBody(&wr, err)
	}
	req := request{kind: kind, model: wr.Model, stream: wr.Stream, maxTokens: defaultMaxTokens}
	if wr.StreamOptions != nil {
		req.includeUsage = wr.StreamOptions.IncludeUsage
	}
	switch {
	case wr.MaxCompletionTokens != nil:
		req.maxTokens = *wr.MaxCompletionTokens
	case wr.MaxTokens != nil:
		req.maxTokens = *wr.MaxTokens
	}
	if req.maxTokens < 1 {
		return request{}, badRequest("max_tokens", "max_tokens must be at least 1, got %d", req.maxTokens)
	}
	sc := promptScanner{blockSize: blockSize, hash: fnvOffset64}
	var err error
	if kind == kindChat {
		err = scanMessages(&sc, wr.Messages)
	} else {
		err = scanPrompt(&sc, wr.Prompt, "prompt")
	}
	if err != nil {
		return request{}, err
	}
	req.promptTokens, req.promptHash, req.blocks = sc.tokens, sc.hash, sc.blocks
	return req, nil
}

func scanMessages(sc *promptScanner, msgs []wireMessage) error {
	if msgs == nil {
		return badRequest("messages", "messages is required")
	}
	for i, m := range msgs {
		c := bytes.TrimSpace(m.Content)
		if len(c) == 0 || string(c) == "null" {
			continue // e.g. an assistant turn that only carries tool calls
		}
		switch c[0] {
		case '"':
			var s string
			if err := json.Unmarshal(c, &s); err != nil {
				return badJSON(fmt.Sprintf("messages[%d].content", i), err)
			}
			sc.addText(s)
		case '[':
			var parts []contentPart
			if err := json.Unmarshal(c, &parts); err != nil {
				return badJSON(fmt.Sprintf("messages[%d].content", i), err)
			}
			for _, p := range parts {
				if p.Type == "" || p.Type == "text" {
					sc.addText(p.Text)
				}
			}
		default:
			return badRequest(fmt.Sprintf("messages[%d].content", i), "messages[%d].content must be a string or an array of parts", i)
		}
	}
	return nil
}

// scanPrompt accepts every prompt shape of the completions API: a string, an
// array of strings, an array of token ids, or an array of token-id arrays.
// A token id counts as one token (its decimal form is hashed as a word).
// field names raw in errors ("prompt", or an embeddings "input").
func scanPrompt(sc *promptScanner, raw json.RawMessage, field string) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return badRequest(field, "%s is required", field)
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return badJSON(field, err)
		}
		sc.addText(s)
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return badRequest(field, "%s must be a string or an array of strings or token ids", field)
	}
	for i, it := range items {
		if len(it) == 0 {
			continue
		}
		switch it[0] {
		case '"':
			var s string
			if err := json.Unmarshal(it, &s); err != nil {
				return badJSON(fmt.Sprintf("%s[%d]", field, i), err)
			}
			sc.addText(s)
		case '[':
			var ids []int64
			if err := json.Unmarshal(it, &ids); err != nil {
				return badJSON(fmt.Sprintf("%s[%d]", field, i), err)
			}
			for _, id := range ids {
				sc.addTokenID(id)
			}
		default:
			var id int64
			if err := json.Unmarshal(it, &id); err != nil {
				return badJSON(fmt.Sprintf("%s[%d]", field, i), err)
			}
			sc.addTokenID(id)
		}
	}
	return nil
}

// promptScanner counts words and hashes them without allocating per word.
// The block chain needs no separate state: the running FNV-1a hash after
// k*blockSize words already depends on every earlier word, so it is the
// chained hash of block k (as vLLM chains parent hashes into block hashes).
type promptScanner struct {
	blockSize int
	tokens    int
	hash      uint64
	blocks    []uint64
	scratch   [24]byte
}

func (sc *promptScanner) addText(s string) {
	start := -1
	for i := 0; i < len(s); {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		if isSpace(r) {
			if start >= 0 {
				sc.addWord(s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
		i += size
	}
	if start >= 0 {
		sc.addWord(s[start:])
	}
}

// isSpace matches strings.Fields, with an ASCII fast path.
func isSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
	}
	return unicode.IsSpace(r)
}

func (sc *promptScanner) addTokenID(id int64) {
	b := strconv.AppendInt(sc.scratch[:0], id, 10)
	h := sc.hash
	for _, c := range b {
		h = (h ^ uint64(c)) * fnvPrime64
	}
	sc.endWord(h)
}

func (sc *promptScanner) addWord(w string) {
	h := sc.hash
	for i := 0; i < len(w); i++ {
		h = (h ^ uint64(w[i])) * fnvPrime64
	}
	sc.endWord(h)
}

func (sc *promptScanner) endWord(h uint64) {
	sc.hash = (h ^ ' ') * fnvPrime64 // word separator, so "ab c" != "a bc"
	sc.tokens++
	if sc.blockSize > 0 && sc.tokens%sc.blockSize == 0 {
		sc.blocks = append(sc.blocks, sc.hash)
	}
}
