package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// respRequest is what the simulator needs from a POST /v1/responses body.
// Prompt tokens cannot be counted here: a previous_response_id puts the
// stored conversation between the instructions and this input, and only
// the handler can look it up (see respPrompt).
type respRequest struct {
	model        string
	stream       bool
	store        bool
	instructions *string
	maxOutput    *int // nil: not set (Config.DefaultMaxTokens, a natural end)
	temperature  float64
	topP         float64
	previousID   *string
	metadata     map[string]string
	user         *string
	parallel     bool
	truncation   string
	// Echoed verbatim when present (the simulator never calls tools nor
	// constrains its text); nil means the API default.
	tools, toolChoice, text json.RawMessage

	texts []string    // the input's counted texts, in order
	items []inputItem // the input as items, for GET …/input_items
}

// inputItem is one item of the request's input. A message keeps its role
// and content (a string, or the parts verbatim); any other item is kept
// verbatim and does not count as prompt tokens.
type inputItem struct {
	role  string          // "" for a non-message item
	text  *string         // string content
	parts json.RawMessage // array content
	raw   json.RawMessage // non-message item
}

// wireResponsesRequest is the subset of the Responses create body the
// simulator reads; unknown fields are ignored, as vLLM does.
type wireResponsesRequest struct {
	Model              string            `json:"model"`
	Input              json.RawMessage   `json:"input"`
	Instructions       *string           `json:"instructions"`
	MaxOutputTokens    *int              `json:"max_output_tokens"`
	Stream             bool              `json:"stream"`
	Temperature        *float64          `json:"temperature"`
	TopP               *float64          `json:"top_p"`
	Store              *bool             `json:"store"`
	PreviousResponseID *string           `json:"previous_response_id"`
	Metadata           map[string]string `json:"metadata"`
	Background         *bool             `json:"background"`
	ParallelToolCalls  *bool             `json:"parallel_tool_calls"`
	Truncation         *string           `json:"truncation"`
	User               *string           `json:"user"`
	Tools              json.RawMessage   `json:"tools"`
	ToolChoice         json.RawMessage   `json:"tool_choice"`
	Text               json.RawMessage   `json:"text"`
}

type wireInputItem struct {
	Type    string          `json:"type"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// parseResponsesRequest decodes and validates a Responses create body.
func parseResponsesRequest(body []byte) (respRequest, error) {
	var wr wireResponsesRequest
	if err := json.Unmarshal(body, &wr); err != nil {
		return respRequest{}, badBody(&wr, err)
	}
	if wr.Model == "" {
		return respRequest{}, badRequest("model", "model is required")
	}
	rq := respRequest{
		model: wr.Model, stream: wr.Stream, store: true,
		instructions: wr.Instructions, maxOutput: wr.MaxOutputTokens,
		temperature: 1, topP: 1, previousID: wr.PreviousResponseID,
		metadata: wr.Metadata, user: wr.User, parallel: true, truncation: "disabled",
	}
	if wr.Store != nil {
		rq.store = *wr.Store
	}
	if wr.Background != nil && *wr.Background {
		return respRequest{}, badRequest("background", "background mode is not supported by this server")
	}
	if m := wr.MaxOutputTokens; m != nil && *m < 1 {
		return respRequest{}, badRequest("max_output_tokens", "max_output_tokens must be at least 1, got %d", *m)
	}
	if t := wr.Temperature; t != nil {
		if !(*t >= 0 && *t <= 2) {
			return respRequest{}, badRequest("temperature", "temperature must be between 0 and 2, got %v", *t)
		}
		rq.temperature = *t
	}
	if p := wr.TopP; p != nil {
		if !(*p >= 0 && *p <= 1) {
			return respRequest{}, badRequest("top_p", "top_p must be between 0 and 1, got %v", *p)
		}
		rq.topP = *p
	}
	if wr.ParallelToolCalls != nil {
		rq.parallel = *wr.ParallelToolCalls
	}
	if tr := wr.Truncation; tr != nil {
		if *tr != "auto" && *tr != "disabled" {
			return respRequest{}, badRequest("truncation", "truncation must be \"auto\" or \"disabled\", got %q", *tr)
		}
		rq.truncation = *tr
	}
	var err error
	if rq.tools, err = echoField("tools", wr.Tools, '['); err != nil {
		return respRequest{}, err
	}
	if rq.toolChoice, err = echoField("tool_choice", wr.ToolChoice, '"', '{'); err != nil {
		return respRequest{}, err
	}
	if rq.text, err = echoField("text", wr.Text, '{'); err != nil {
		return respRequest{}, err
	}
	if err := rq.scanInput(wr.Input); err != nil {
		return respRequest{}, err
	}
	return rq, nil
}

// echoField checks that an echoed field is one of the JSON kinds its first
// byte names; null or absent gives nil (the API default).
func echoField(name string, raw json.RawMessage, kinds ...byte) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if bytes.IndexByte(kinds, raw[0]) < 0 {
		want := map[byte]string{'[': "an array", '{': "an object", '"': "a string"}
		msg := want[kinds[0]]
		for _, k := range kinds[1:] {
			msg += " or " + want[k]
		}
		return nil, badRequest(name, "%s must be %s", name, msg)
	}
	return raw, nil
}

// scanInput reads input: a string (one user message) or an array of items.
func (rq *respRequest) scanInput(raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return badRequest("input", "input is required")
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return badJSON("input", err)
		}
		rq.texts = append(rq.texts, s)
		rq.items = append(rq.items, inputItem{role: "user", text: &s})
		return nil
	case '[':
	default:
		return badRequest("input", "input must be a string or an array of input items")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return badJSON("input", err)
	}
	for i, it := range items {
		field := fmt.Sprintf("input[%d]", i)
		if len(it) == 0 || it[0] != '{' {
			return badRequest(field, "%s must be an object", field)
		}
		var wi wireInputItem
		if err := json.Unmarshal(it, &wi); err != nil {
			return badJSON(field, err)
		}
		if wi.Type != "" && wi.Type != "message" {
			// function_call_output, reasoning, item_reference…: accepted,
			// kept for input_items, not counted.
			rq.items = append(rq.items, inputItem{raw: it})
			continue
		}
		if err := rq.scanMessage(field, wi); err != nil {
			return err
		}
	}
	return nil
}

func (rq *respRequest) scanMessage(field string, wi wireInputItem) error {
	switch wi.Role {
	case "user", "system", "developer", "assistant":
	case "":
		return badRequest(field+".role", "%s.role is required", field)
	default:
		return badRequest(field+".role", "%s.role must be one of user, system, developer or assistant, got %q", field, wi.Role)
	}
	c := bytes.TrimSpace(wi.Content)
	if len(c) == 0 || string(c) == "null" {
		return badRequest(field+".content", "%s.content is required", field)
	}
	switch c[0] {
	case '"':
		var s string
		if err := json.Unmarshal(c, &s); err != nil {
			return badJSON(field+".content", err)
		}
		rq.texts = append(rq.texts, s)
		rq.items = append(rq.items, inputItem{role: wi.Role, text: &s})
	case '[':
		var parts []contentPart
		if err := json.Unmarshal(c, &parts); err != nil {
			return badJSON(field+".content", err)
		}
		for _, p := range parts {
			// input_text in user turns, output_text in assistant turns a
			// client replays; images and files carry no counted words.
			if p.Type == "input_text" || p.Type == "output_text" {
				rq.texts = append(rq.texts, p.Text)
			}
		}
		rq.items = append(rq.items, inputItem{role: wi.Role, parts: c})
	default:
		return badRequest(field+".content", "%s.content must be a string or an array of content parts", field)
	}
	return nil
}

// respPrompt counts and hashes a Responses prompt in the order the engine
// sees it: this request's instructions, then the stored conversation of
// previous_response_id (its input and output words, not its instructions,
// which do not carry over), then this input. A follow-up therefore repeats
// the previous prompt's words after the instructions and hits the prefix
// cache as a real engine's chat template would.
func respPrompt(instructions *string, conversation, input []string, blockSize int) promptScanner {
	sc := promptScanner{blockSize: blockSize, hash: fnvOffset64}
	if instructions != nil {
		sc.addText(*instructions)
	}
	for _, t := range conversation {
		sc.addText(t)
	}
	for _, t := range input {
		sc.addText(t)
	}
	return sc
}
