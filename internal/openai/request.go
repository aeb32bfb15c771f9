package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// Peek is the handful of request fields the gateway needs. Everything else
// is forwarded byte for byte without being decoded.
type Peek struct {
	Model     string
	Stream    bool
	MaxTokens int // max_tokens, or max_completion_tokens; 0 when absent
	// IncludeUsage is stream_options.include_usage.
	IncludeUsage bool
	// Deterministic: temperature 0 or a fixed seed, and at most one choice;
	// the precondition for caching, checked here so other requests never
	// pay for the cache key.
	Deterministic bool
	// API is the request's API (the zero value: the chat family), which
	// says how its prompt, answer and stream are read.
	API API
	// ModelDefaulted: the body names no model, and Model is the one the
	// gateway chose for it (a moderation's); the body goes upstream with
	// it added.
	ModelDefaulted bool
	// Store is a chat request's "store": true (OpenAI's stored
	// completions): the backend may keep the completion, so it is a
	// request with side effects (proxy.Request.SideEffects). The
	// Responses API's store is ResponsesPeek.Store.
	Store bool
	// Choices is how many completions the backend generates when more
	// than one: n, or best_of (legacy completions: best_of are generated,
	// n returned) when larger; 0 for one. Each may be max_tokens long, so
	// the completion's estimate is this many times it (Completions).
	Choices int
}

// Completions is the completions p asks the backend to generate: Choices,
// at least 1.
func (p *Peek) Completions() int { return max(p.Choices, 1) }

// Bounds on the numbers the gateway acts on. MaxTokensLimit is far above
// any model's context (so no real request is refused) and small enough
// that cost arithmetic on it cannot overflow; MaxChoices is OpenAI's own
// bound on n.
const (
	MaxTokensLimit = 1 << 24
	MaxChoices     = 128
)

// actedOn are the top-level fields the gateway reads, in any component:
// routing (model), relaying (stream, stream_options), cost and admission
// (max_tokens, max_completion_tokens, n, best_of), the cache's determinism test and
// key (temperature, seed, n, user), prefix affinity (messages, prompt)
// and retries (store: a stored completion is not sent twice).
// The gateway must read each exactly as the Python backend will, so a key
// that matches one of them only case-insensitively (Go's encoding/json
// would conflate them, Python does not), or that appears twice (which
// readers resolve differently), is refused rather than guessed at.
var actedOn = [...]string{"model", "stream", "stream_options", "max_tokens", "max_completion_tokens",
	"temperature", "seed", "n", "user", "messages", "prompt", "store", "best_of"}

// ParseRequest extracts the peeked fields from an inference request body.
// It validates the body (scanJSON, which notes where the top-level members
// are) and reads their keys case-sensitively, as Python's json module
// does; every error is an *Error (400) naming the offending field in Param.
func ParseRequest(body []byte) (Peek, error) { return parseRequest(body, true) }

// parseRequest is ParseRequest; noted: it reads the members the scan
// noted, else (or when there were more than it notes) it walks them again
// (FuzzParseRequestNoted checks that both read the same).
func parseRequest(body []byte, noted bool) (Peek, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return Peek{}, BadRequest("invalid_json", "the request body is empty; it must be a JSON object")
	}
	var top topMembers
	notes := scanNotes{members: &top, utf8: true}
	if !scanJSON(body, &notes) {
		return Peek{}, syntaxError(body)
	}
	if notes.badUTF8 > 0 {
		return Peek{}, notUTF8(body, notes.badUTF8-1)
	}
	if trimmed[0] != '{' {
		return Peek{}, ErrNotObject
	}
	var (
		p                        Peek
		seen                     uint16
		maxTokens, maxCompletion int
		hasMax, hasMaxCompletion bool
		temperature              float64
		hasTemperature, hasSeed  bool
		n                        = 1
		bestOf                   int
	)
	noted = noted && !top.over
	m := newMembers(trimmed) // walked only when not noted
	for k := 0; ; k++ {
		rawKey, val, ok := member(body, &top, noted, k, &m)
		if !ok {
			break
		}
		idx := fieldIndex(rawKey)
		if idx < 0 {
			if f := foldedField(rawKey); f != "" {
				return Peek{}, ambiguousKey(decodeKey(rawKey), f)
			}
			continue
		}
		key := actedOn[idx]
		if seen&(1<<idx) != 0 {
			return Peek{}, duplicateKey(key)
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
		case "stream_options":
			p.IncludeUsage, err = streamOptions(val)
		case "max_tokens":
			maxTokens, err = intValue(key, val, 0, MaxTokensLimit)
			hasMax = true
		case "max_completion_tokens":
			maxCompletion, err = intValue(key, val, 0, MaxTokensLimit)
			hasMaxCompletion = true
		case "temperature":
			temperature, err = numberValue(key, val)
			hasTemperature = true
		case "seed":
			err = integerLiteral(key, val)
			hasSeed = true
		case "n":
			n, err = intValue(key, val, 1, MaxChoices)
		case "store":
			p.Store, err = boolValue(key, val)
		case "best_of":
			bestOf, err = intValue(key, val, 0, MaxChoices)
		}
		if err != nil {
			return Peek{}, err
		}
	}
	switch {
	case hasMaxCompletion:
		p.MaxTokens = maxCompletion
	case hasMax:
		p.MaxTokens = maxTokens
	}
	p.Deterministic = ((hasTemperature && temperature == 0) || hasSeed) && n == 1
	if c := max(n, bestOf); c > 1 {
		p.Choices = c
	}
	return p, nil
}

// member is the k-th top-level member of body: from the spans its scan
// noted (noted), else the walk's next.
func member(body []byte, top *topMembers, noted bool, k int, walk *members) (key, val []byte, ok bool) {
	if !noted {
		return walk.next()
	}
	if k == top.n {
		return nil, nil, false
	}
	s := &top.m[k]
	return body[s.key0:s.key1], body[s.val0:s.val1], true
}

// ErrNotObject is returned for a body that is valid JSON but not an object.
var ErrNotObject = BadRequest("invalid_json", "the request body must be a JSON object")

// fieldIndex is the index in actedOn of the raw (undecoded) key, or -1.
func fieldIndex(rawKey []byte) int {
	if bytes.IndexByte(rawKey, '\\') >= 0 {
		return indexOf(decodeKey(rawKey))
	}
	return indexOf(string(rawKey)) // no allocation: the conversion is only compared
}

func indexOf(key string) int {
	switch key {
	case "model":
		return 0
	case "stream":
		return 1
	case "stream_options":
		return 2
	case "max_tokens":
		return 3
	case "max_completion_tokens":
		return 4
	case "temperature":
		return 5
	case "seed":
		return 6
	case "n":
		return 7
	case "user":
		return 8
	case "messages":
		return 9
	case "prompt":
		return 10
	case "store":
		return 11
	case "best_of":
		return 12
	}
	return -1
}

// foldedField is the acted-on field the raw key equals case-insensitively
// (with Unicode folding, as encoding/json matches keys), or "".
func foldedField(rawKey []byte) string {
	key := rawKey
	if bytes.IndexByte(rawKey, '\\') >= 0 {
		key = []byte(decodeKey(rawKey))
	}
	for i := range actedOn {
		if bytes.EqualFold(key, actedOnBytes[i]) {
			return actedOn[i]
		}
	}
	return ""
}

var actedOnBytes = func() (b [len(actedOn)][]byte) {
	for i, f := range actedOn {
		b[i] = []byte(f)
	}
	return b
}()

// streamOptions reads stream_options.include_usage with the same rules as
// the top level.
func streamOptions(val []byte) (bool, error) {
	const param = "stream_options.include_usage"
	if val[0] != '{' {
		return false, typeError("stream_options", "an object")
	}
	var include, seen bool
	m := newMembers(val)
	for {
		rawKey, v, ok := m.next()
		if !ok {
			return include, nil
		}
		switch key := decodeKey(rawKey); {
		case key == "include_usage":
			if seen {
				return false, duplicateKey(param)
			}
			seen = true
			if isNull(v) {
				continue
			}
			var err error
			if include, err = boolValue(param, v); err != nil {
				return false, err
			}
		case strings.EqualFold(key, "include_usage"):
			return false, ambiguousKey("stream_options."+key, param)
		}
	}
}

func isNull(v []byte) bool { return len(v) == 4 && string(v) == "null" }

func stringValue(param string, v []byte) (string, error) {
	if v[0] != '"' {
		return "", typeError(param, "a string")
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1]), nil
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", typeError(param, "a string")
	}
	return s, nil
}

func boolValue(param string, v []byte) (bool, error) {
	switch string(v) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, typeError(param, "a boolean")
}

// intValue reads an integer in [lo, hi]. A number with a fraction or an
// exponent is refused, as the backends' validators refuse 1.5.
func intValue(param string, v []byte, lo, hi int) (int, error) {
	if err := integerLiteral(param, v); err != nil {
		return 0, err
	}
	x, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || x < int64(lo) || x > int64(hi) {
		e := BadRequest("invalid_value", param+" must be between "+strconv.Itoa(lo)+" and "+strconv.Itoa(hi))
		e.Param = param
		return 0, e
	}
	return int(x), nil
}

func integerLiteral(param string, v []byte) error {
	if !isNumber(v) || bytes.ContainsAny(v, ".eE") {
		return typeError(param, "an integer")
	}
	return nil
}

func numberValue(param string, v []byte) (float64, error) {
	if !isNumber(v) {
		return 0, typeError(param, "a number")
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, typeError(param, "a number")
	}
	return f, nil // out of range: ±Inf, which is not 0
}

// isNumber: v is a JSON value (already validated), so a leading '-' or
// digit means a number.
func isNumber(v []byte) bool { return v[0] == '-' || (v[0] >= '0' && v[0] <= '9') }

func typeError(param, want string) *Error {
	e := BadRequest("invalid_type", param+" must be "+want)
	e.Param = param
	return e
}

func duplicateKey(param string) *Error {
	e := BadRequest("duplicate_parameter", strconv.Quote(param)+" appears more than once in the request body")
	e.Param = param
	return e
}

func ambiguousKey(key, field string) *Error {
	e := BadRequest("ambiguous_parameter", strconv.Quote(key)+" differs only in case from "+strconv.Quote(field)+
		"; keys are case-sensitive, send "+strconv.Quote(field)+" once")
	e.Param = key
	return e
}

// syntaxError describes invalid JSON by position only: the decoder's own
// wording is not part of the API.
func syntaxError(body []byte) *Error {
	msg := "We could not parse the JSON body of your request: it is not valid JSON"
	var syn *json.SyntaxError
	if err := json.Unmarshal(body, new(json.RawMessage)); errors.As(err, &syn) {
		if strings.HasSuffix(syn.Error(), "exceeded max depth") {
			// Valid by the grammar, but deeper than any parser here (or
			// Python's, whose recursion limit is lower) will follow.
			msg = "We could not parse the JSON body of your request: it has arrays or objects nested more than " +
				strconv.Itoa(maxNestingDepth) + " deep"
		}
		msg += " (at byte " + strconv.FormatInt(syn.Offset, 10) + ")"
	}
	return BadRequest("invalid_json", msg)
}

// notUTF8 refuses a body that the grammar accepts but whose bytes are
// not UTF-8, from byte i on (the first that is not, as the scan noted it:
// scanNotes.utf8): JSON text exchanged between systems must be UTF-8 (RFC
// 8259 §8.1). Go's decoder and the grammar accept such bytes (a decoder reads
// each as U+FFFD) while a Python backend's json.loads refuses the body
// (FastAPI: 400 "There was an error parsing the body", not an OpenAI
// error), and the gateway would key, route and count a request that the
// backend reads differently. OpenAI answers a body it cannot parse with
// this message.
func notUTF8(body []byte, i int) error {
	return BadRequest("invalid_json", "We could not parse the JSON body of your request: it is not UTF-8 text (byte 0x"+
		strconv.FormatUint(uint64(body[i]), 16)+" at byte "+strconv.Itoa(i)+"); JSON must be sent as UTF-8")
}

// ReplaceModel returns body with its top-level "model" set to model, in a
// new buffer (ReplaceModelSplice without the splice).
func ReplaceModel(body []byte, model string) ([]byte, error) {
	segs, err := ReplaceModelSplice(body, model)
	if err != nil {
		return nil, err
	}
	return JoinChunks(segs), nil
}

// ReplaceModelSplice is body with its top-level "model" set to model, as
// a splice: the bytes of body before the model's value, the new value,
// and the bytes after it (sub-slices of body, valid as long as it is). It
// is only used when a backend expects another model name. Only the
// model's value is replaced; every other byte is kept as the client sent
// it. body must have passed ParseRequest (so "model" appears at most
// once).
func ReplaceModelSplice(body []byte, model string) ([][]byte, error) {
	if !validJSON(body) {
		return nil, syntaxError(body)
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if trimmed[0] != '{' {
		return nil, ErrNotObject
	}
	start := len(body) - len(trimmed)
	quoted, err := json.Marshal(model)
	if err != nil {
		return nil, err
	}
	obj := body[start:]
	m := newMembers(obj)
	for {
		rawKey, val, ok := m.next()
		if !ok {
			break
		}
		if decodeKey(rawKey) != "model" {
			continue
		}
		at := start + int(offsetIn(obj, val))
		return [][]byte{body[:at], quoted, body[at+len(val):]}, nil
	}
	// No model: add one as the first member.
	mid := make([]byte, 0, len(quoted)+10)
	mid = append(mid, `"model":`...)
	mid = append(mid, quoted...)
	if m := newMembers(obj); hasMember(&m) {
		mid = append(mid, ',')
	}
	return [][]byte{body[:start+1], mid, body[start+1:]}, nil
}

func hasMember(m *members) bool { _, _, ok := m.next(); return ok }

// offsetIn is where sub, a subslice of b, starts in b.
func offsetIn(b, sub []byte) int { return cap(b) - cap(sub) }
