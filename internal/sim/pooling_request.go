package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// poolKind is one of the endpoints beyond generation that the simulator
// answers with vLLM's shapes (OpenAI's for moderations): scoring and
// classifying texts (prefill only, through the engine) and the tokenizer
// (on the CPU, at once).
type poolKind uint8

const (
	poolRerank      poolKind = iota // /v1/rerank, /rerank, /v2/rerank
	poolScore                       // /v1/score, /score
	poolClassify                    // /classify
	poolPooling                     // /pooling
	poolModerations                 // /v1/moderations
	poolTokenize                    // /tokenize
	poolDetokenize                  // /detokenize
)

// vocabSize is the simulated tokenizer's vocabulary: a word of the
// simulator's vocabulary is its index, any other word a hash of it above
// them (tokenIDOf), so every id is below vocabSize.
const vocabSize = 32000

// poolItem is one text of a request, read with the simulator's token
// model: one token per whitespace-separated word.
type poolItem struct {
	text   string
	tokens int
	hash   uint64 // of its words, as promptScanner hashes a prompt
}

// poolRequest is what the simulator reads of a request to a poolKind
// endpoint.
type poolRequest struct {
	kind  poolKind
	model string
	// items are the texts answered one each: a rerank's documents, a
	// score's text_2, the inputs of classify, pooling and moderations,
	// the one text of a tokenize (a prompt, or the messages' contents).
	items []poolItem
	// pair is what each item is scored against: a rerank's query, a
	// score's text_1 (one for all items, or one per item).
	pair []poolItem
	topN int // rerank: the results to return, 0 = all
	// tokens: a detokenize's ids.
	tokens []int64
	// promptTokens is the engine's prefill: each scored pair's tokens
	// together, or each input's.
	promptTokens int
}

// parsePoolRequest reads body for endpoint kind strictly: a JSON object
// whose keys are matched exactly (as Python's json module and pydantic
// do; other keys are ignored as vLLM's models allow extras), each read
// field of its type, the required ones present; errors name the field.
func parsePoolRequest(kind poolKind, body []byte) (poolRequest, error) {
	req := poolRequest{kind: kind}
	var obj poolFields
	if err := json.Unmarshal(body, &obj); err != nil {
		return req, badBody(&obj, err)
	}
	if obj == nil {
		return req, badRequest("", "the body must be a JSON object")
	}
	if m := obj.field("model"); m != nil {
		if err := decodeAs("model", m, &req.model, "a string"); err != nil {
			return req, err
		}
	}
	var err error
	switch kind {
	case poolRerank:
		err = req.readRerank(obj)
	case poolScore:
		err = req.readScore(obj)
	case poolClassify, poolPooling, poolModerations:
		err = req.readInputs(obj)
	case poolTokenize:
		err = req.readTokenize(obj)
	case poolDetokenize:
		err = req.readDetokenize(obj)
	}
	if err != nil {
		return req, err
	}
	req.promptTokens = prefillTokens(&req)
	return req, nil
}

// poolFields is a pooling request's body: its keys, matched exactly.
type poolFields map[string]json.RawMessage

// field is the value of key name; nil when absent or null.
func (obj poolFields) field(name string) json.RawMessage {
	v := bytes.TrimSpace(obj[name])
	if string(v) == "null" {
		return nil
	}
	return v
}

// readRerank reads a rerank's query, documents and top_n.
func (req *poolRequest) readRerank(obj poolFields) (err error) {
	var q string
	if err = requireAs("query", obj.field("query"), &q, "a string"); err != nil {
		return err
	}
	req.pair = []poolItem{itemOf(q)}
	if req.items, err = textList("documents", obj.field("documents"), false); err != nil {
		return err
	}
	if v := obj.field("top_n"); v != nil {
		if err = decodeAs("top_n", v, &req.topN, "an integer"); err != nil {
			return err
		}
		if req.topN < 0 {
			return badRequest("top_n", "top_n must be at least 0")
		}
	}
	return nil
}

// readScore reads a score's text_1 and text_2: one text against each of
// the others, or pair by pair.
func (req *poolRequest) readScore(obj poolFields) (err error) {
	if req.pair, err = textList("text_1", obj.field("text_1"), true); err != nil {
		return err
	}
	if req.items, err = textList("text_2", obj.field("text_2"), true); err != nil {
		return err
	}
	if len(req.pair) != 1 && len(req.pair) != len(req.items) {
		return badRequest("text_2", "text_1 must hold one text or as many as text_2 (%d and %d)", len(req.pair), len(req.items))
	}
	return nil
}

// readInputs reads a classify's, pooling's or moderation's input, or (not
// a moderation's) its chat messages instead.
func (req *poolRequest) readInputs(obj poolFields) (err error) {
	in, msgs := obj.field("input"), obj.field("messages")
	switch {
	case req.kind != poolModerations && msgs != nil && in != nil:
		return badRequest("messages", "send either input or messages, not both")
	case req.kind != poolModerations && msgs != nil:
		var it poolItem
		if it, err = messagesItem(msgs); err != nil {
			return err
		}
		req.items = []poolItem{it}
	default:
		if req.items, err = inputItems(in); err != nil {
			return err
		}
	}
	return nil
}

// readTokenize reads a tokenize's prompt, or its chat messages instead.
func (req *poolRequest) readTokenize(obj poolFields) (err error) {
	prompt, msgs := obj.field("prompt"), obj.field("messages")
	switch {
	case prompt != nil && msgs != nil:
		return badRequest("messages", "send either prompt or messages, not both")
	case msgs != nil:
		var it poolItem
		if it, err = messagesItem(msgs); err != nil {
			return err
		}
		req.items = []poolItem{it}
	default:
		var p string
		if err = requireAs("prompt", prompt, &p, "a string"); err != nil {
			return err
		}
		req.items = []poolItem{itemOf(p)}
	}
	return nil
}

// readDetokenize reads a detokenize's token ids, each in the vocabulary.
func (req *poolRequest) readDetokenize(obj poolFields) error {
	if err := requireAs("tokens", obj.field("tokens"), &req.tokens, "an array of integers"); err != nil {
		return err
	}
	for i, id := range req.tokens {
		if id < 0 || id >= vocabSize {
			return badRequest(fmt.Sprintf("tokens[%d]", i), "token id %d is out of vocabulary (0 to %d)", id, vocabSize-1)
		}
	}
	return nil
}

// prefillTokens is the engine's prefill for req: each pair's tokens
// together (a rerank's query once per document), or each item's.
func prefillTokens(req *poolRequest) int {
	n := 0
	for i, it := range req.items {
		n += it.tokens
		if len(req.pair) == 1 {
			n += req.pair[0].tokens
		} else if i < len(req.pair) {
			n += req.pair[i].tokens
		}
	}
	return n
}

// decodeAs decodes v into dst, refusing another JSON type in the API's
// words (want).
func decodeAs(name string, v json.RawMessage, dst any, want string) error {
	if json.Unmarshal(v, dst) != nil {
		return badRequest(name, "%s must be %s", name, want)
	}
	return nil
}

// requireAs is decodeAs for a required field (v nil: absent or null).
func requireAs(name string, v json.RawMessage, dst any, want string) error {
	if v == nil {
		return badRequest(name, "%s is required", name)
	}
	return decodeAs(name, v, dst, want)
}

// textList reads a required array of strings (or, with one, a string).
func textList(name string, v json.RawMessage, one bool) ([]poolItem, error) {
	if v == nil {
		return nil, badRequest(name, "%s is required", name)
	}
	if one && v[0] == '"' {
		var s string
		if err := decodeAs(name, v, &s, "a string"); err != nil {
			return nil, err
		}
		return []poolItem{itemOf(s)}, nil
	}
	var raw []json.RawMessage
	want := "an array of strings"
	if one {
		want = "a string or an array of strings"
	}
	if err := decodeAs(name, v, &raw, want); err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, badRequest(name, "%s must not be empty", name)
	}
	items := make([]poolItem, len(raw))
	for i, r := range raw {
		var s string
		el := fmt.Sprintf("%s[%d]", name, i)
		if err := decodeAs(el, r, &s, "a string"); err != nil {
			return nil, err
		}
		items[i] = itemOf(s)
	}
	return items, nil
}

// inputItems reads "input" as embeddings read it (a string, token ids, or
// an array of either): one item per input.
func inputItems(v json.RawMessage) ([]poolItem, error) {
	inputs, err := splitInputs(v)
	if err != nil {
		return nil, err
	}
	items := make([]poolItem, len(inputs))
	for i, in := range inputs {
		sc := promptScanner{hash: fnvOffset64}
		if err := scanPrompt(&sc, in, inputField(len(inputs), i)); err != nil {
			return nil, err
		}
		items[i] = poolItem{tokens: sc.tokens, hash: sc.hash}
	}
	return items, nil
}

// messagesItem reads a chat-form request's messages as one text.
func messagesItem(v json.RawMessage) (poolItem, error) {
	var msgs []wireMessage
	if err := decodeAs("messages", v, &msgs, "an array of messages"); err != nil {
		return poolItem{}, err
	}
	sc := promptScanner{hash: fnvOffset64}
	if err := scanMessages(&sc, msgs); err != nil {
		return poolItem{}, err
	}
	var words []string
	for _, m := range msgs {
		words = append(words, contentWords(m.Content)...)
	}
	return poolItem{text: strings.Join(words, " "), tokens: sc.tokens, hash: sc.hash}, nil
}

// contentWords is the words of a message content scanMessages accepted.
func contentWords(c json.RawMessage) []string {
	var s string
	if json.Unmarshal(c, &s) == nil {
		return strings.Fields(s)
	}
	var parts []contentPart
	if json.Unmarshal(c, &parts) != nil {
		return nil
	}
	var words []string
	for _, p := range parts {
		if p.Type == "" || p.Type == "text" {
			words = append(words, strings.Fields(p.Text)...)
		}
	}
	return words
}

func itemOf(s string) poolItem {
	sc := promptScanner{hash: fnvOffset64}
	sc.addText(s)
	return poolItem{text: s, tokens: sc.tokens, hash: sc.hash}
}
