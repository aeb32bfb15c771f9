package sim

import "encoding/json"

// responseObject is the Responses API Response, fields in the order OpenAI
// sends them. Request fields the simulator does not act on are echoed, so a
// client reads back what it asked for.
type responseObject struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"`
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"`
	Background         bool               `json:"background"`
	Error              *struct{}          `json:"error"` // always null: failures are HTTP errors or cut streams
	IncompleteDetails  *incompleteDetails `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	MaxOutputTokens    *int               `json:"max_output_tokens"`
	MaxToolCalls       *int               `json:"max_tool_calls"`
	Model              string             `json:"model"`
	Output             []outputMessage    `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Reasoning          reasoningEcho      `json:"reasoning"`
	ServiceTier        string             `json:"service_tier"`
	Store              bool               `json:"store"`
	Temperature        float64            `json:"temperature"`
	Text               json.RawMessage    `json:"text"`
	ToolChoice         json.RawMessage    `json:"tool_choice"`
	Tools              json.RawMessage    `json:"tools"`
	TopLogprobs        int                `json:"top_logprobs"`
	TopP               float64            `json:"top_p"`
	Truncation         string             `json:"truncation"`
	Usage              *responseUsage     `json:"usage"`
	User               *string            `json:"user"`
	Metadata           map[string]string  `json:"metadata"`
}

type incompleteDetails struct {
	Reason string `json:"reason"`
}

type reasoningEcho struct {
	Effort  *string `json:"effort"`
	Summary *string `json:"summary"`
}

// outputMessage is the one output item: the assistant's message.
type outputMessage struct {
	Type    string       `json:"type"`
	ID      string       `json:"id"`
	Status  string       `json:"status"`
	Role    string       `json:"role"`
	Content []outputText `json:"content"`
}

type outputText struct {
	Type        string     `json:"type"`
	Annotations []struct{} `json:"annotations"`
	Logprobs    []struct{} `json:"logprobs"`
	Text        string     `json:"text"`
}

type responseUsage struct {
	InputTokens         int                 `json:"input_tokens"`
	InputTokensDetails  inputTokensDetails  `json:"input_tokens_details"`
	OutputTokens        int                 `json:"output_tokens"`
	OutputTokensDetails outputTokensDetails `json:"output_tokens_details"`
	TotalTokens         int                 `json:"total_tokens"`
}

type inputTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

type outputTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

func newResponseUsage(prompt, output, cached int) *responseUsage {
	return &responseUsage{
		InputTokens:        prompt,
		InputTokensDetails: inputTokensDetails{CachedTokens: cached},
		OutputTokens:       output,
		TotalTokens:        prompt + output,
	}
}

// API defaults for the echoed fields a request left out.
var (
	defaultTextConfig = json.RawMessage(`{"format":{"type":"text"}}`)
	defaultToolChoice = json.RawMessage(`"auto"`)
	emptyArray        = json.RawMessage(`[]`)
)

// newResponseObject is the response to rq in its initial state: in
// progress, no output, no usage.
func newResponseObject(rq *respRequest, id, model string, created int64) responseObject {
	r := responseObject{
		ID: id, Object: "response", CreatedAt: created, Status: "in_progress",
		Instructions: rq.instructions, MaxOutputTokens: rq.maxOutput, Model: model,
		Output: []outputMessage{}, ParallelToolCalls: rq.parallel, PreviousResponseID: rq.previousID,
		ServiceTier: "default", Store: rq.store, Temperature: rq.temperature,
		Text: rq.text, ToolChoice: rq.toolChoice, Tools: rq.tools,
		TopP: rq.topP, Truncation: rq.truncation, User: rq.user, Metadata: rq.metadata,
	}
	if r.Text == nil {
		r.Text = defaultTextConfig
	}
	if r.ToolChoice == nil {
		r.ToolChoice = defaultToolChoice
	}
	if r.Tools == nil {
		r.Tools = emptyArray
	}
	if r.Metadata == nil {
		r.Metadata = map[string]string{}
	}
	return r
}

// newOutputMessage is the assistant message item; status is "in_progress",
// "completed" or "incomplete" (the output stopped at max_output_tokens).
func newOutputMessage(id, status, text string, withText bool) outputMessage {
	m := outputMessage{Type: "message", ID: id, Status: status, Role: "assistant", Content: []outputText{}}
	if withText {
		m.Content = append(m.Content, newOutputText(text))
	}
	return m
}

func newOutputText(text string) outputText {
	return outputText{Type: "output_text", Annotations: []struct{}{}, Logprobs: []struct{}{}, Text: text}
}

// finish sets the final state: status, output, usage.
func (r *responseObject) finish(status, msgID, text string, prompt, output, cached int) {
	r.Status = status
	if status == "incomplete" {
		r.IncompleteDetails = &incompleteDetails{Reason: "max_output_tokens"}
	}
	r.Output = []outputMessage{newOutputMessage(msgID, status, text, true)}
	r.Usage = newResponseUsage(prompt, output, cached)
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs and validated raw JSON: cannot happen
	}
	return b
}
