package sim

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// wireResponse decodes a Response as a client would, with pointers where a
// null must be told from a zero.
type wireResponse struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"`
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"`
	Error              *json.RawMessage   `json:"error"`
	IncompleteDetails  *incompleteDetails `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	MaxOutputTokens    *int               `json:"max_output_tokens"`
	Model              string             `json:"model"`
	Output             []outputMessage    `json:"output"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Store              bool               `json:"store"`
	Temperature        float64            `json:"temperature"`
	TopP               float64            `json:"top_p"`
	Usage              *responseUsage     `json:"usage"`
	Metadata           map[string]string  `json:"metadata"`
}

func respBody(input string, maxOut int, extra string) string {
	in, _ := json.Marshal(input)
	mo := ""
	if maxOut > 0 {
		mo = fmt.Sprintf(`,"max_output_tokens":%d`, maxOut)
	}
	return fmt.Sprintf(`{"model":"sim-model","input":%s%s%s}`, in, mo, extra)
}

func (r wireResponse) text() string {
	if len(r.Output) != 1 || len(r.Output[0].Content) != 1 {
		return ""
	}
	return r.Output[0].Content[0].Text
}

func TestResponsesNonStreamShape(t *testing.T) {
	_, url := startSim(t, fastConfig())
	status, body := postRead(t, url+"/v1/responses",
		respBody("one two three", 5, `,"instructions":"be brief","temperature":0.5,"metadata":{"k":"v"},"some_future_field":{"x":1}`))
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	// Fields every SDK reads must be present, with null where OpenAI sends null.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"object": `"response"`, "status": `"incomplete"`, "error": `null`,
		"incomplete_details": `{"reason":"max_output_tokens"}`, "instructions": `"be brief"`,
		"max_output_tokens": `5`, "model": `"sim-model"`, "parallel_tool_calls": `true`,
		"previous_response_id": `null`, "store": `true`, "temperature": `0.5`, "top_p": `1`,
		"text": `{"format":{"type":"text"}}`, "tool_choice": `"auto"`, "tools": `[]`,
		"truncation": `"disabled"`, "background": `false`, "metadata": `{"k":"v"}`, "user": `null`,
		"reasoning": `{"effort":null,"summary":null}`,
	} {
		if got := string(raw[k]); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	r := decode[wireResponse](t, body)
	if !strings.HasPrefix(r.ID, "resp_") || r.CreatedAt == 0 {
		t.Errorf("id %q created_at %d", r.ID, r.CreatedAt)
	}
	if len(r.Output) != 1 {
		t.Fatalf("output %s", raw["output"])
	}
	m := r.Output[0]
	if m.Type != "message" || !strings.HasPrefix(m.ID, "msg_") || m.Role != "assistant" || m.Status != "incomplete" ||
		len(m.Content) != 1 || m.Content[0].Type != "output_text" || m.Content[0].Annotations == nil {
		t.Errorf("output item %+v", m)
	}
	if n := len(strings.Fields(r.text())); n != 5 {
		t.Errorf("text %q has %d words, want 5", r.text(), n)
	}
	// instructions count first: 2 + 3 prompt words.
	u := r.Usage
	if u == nil || u.InputTokens != 5 || u.OutputTokens != 5 || u.TotalTokens != 10 || u.OutputTokensDetails.ReasoningTokens != 0 {
		t.Errorf("usage %+v", u)
	}
	if !strings.Contains(string(raw["usage"]), `"input_tokens_details":{"cached_tokens":0}`) {
		t.Errorf("usage %s lacks cached_tokens", raw["usage"])
	}
}

// Without max_output_tokens the answer is DefaultMaxTokens words and ends on
// its own: completed, max_output_tokens null.
func TestResponsesDefaultLengthCompletes(t *testing.T) {
	cfg := fastConfig()
	cfg.DefaultMaxTokens = 7
	_, url := startSim(t, cfg)
	status, body := postRead(t, url+"/v1/responses", respBody("hi", 0, ""))
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	r := decode[wireResponse](t, body)
	if r.Status != "completed" || r.IncompleteDetails != nil || r.MaxOutputTokens != nil || r.Output[0].Status != "completed" {
		t.Errorf("status %q details %+v max %v item %q", r.Status, r.IncompleteDetails, r.MaxOutputTokens, r.Output[0].Status)
	}
	if r.Usage.OutputTokens != 7 || len(strings.Fields(r.text())) != 7 {
		t.Errorf("usage %+v text %q", r.Usage, r.text())
	}
}

// The token model matches chat's: the same words give the same prompt count
// and the same text, whether as a string, message items or parts.
func TestResponsesMatchChat(t *testing.T) {
	_, url := startSim(t, fastConfig())
	_, cb := postRead(t, url+"/v1/chat/completions",
		`{"messages":[{"role":"system","content":"sys words"},{"role":"user","content":"alpha beta gamma"}],"max_tokens":6}`)
	c := decode[chatCompletion](t, cb)
	for _, body := range []string{
		`{"model":"sim-model","instructions":"sys words","input":"alpha beta gamma","max_output_tokens":6}`,
		`{"model":"sim-model","input":[{"role":"system","content":"sys words"},{"type":"message","role":"user","content":[{"type":"input_text","text":"alpha beta"},{"type":"input_image","image_url":"x"},{"type":"input_text","text":"gamma"}]}],"max_output_tokens":6}`,
		`{"model":"sim-model","input":[{"role":"developer","content":"sys words"},{"type":"function_call_output","call_id":"c1","output":"not counted"},{"role":"user","content":"alpha beta gamma"}],"max_output_tokens":6}`,
	} {
		status, b := postRead(t, url+"/v1/responses", body)
		if status != 200 {
			t.Fatalf("%s: %d %s", body, status, b)
		}
		r := decode[wireResponse](t, b)
		if r.text() != c.Choices[0].Message.Content || r.Usage.InputTokens != c.Usage.PromptTokens {
			t.Errorf("%s:\n text %q (%d prompt tokens)\n chat %q (%d)", body, r.text(), r.Usage.InputTokens,
				c.Choices[0].Message.Content, c.Usage.PromptTokens)
		}
	}
}

// Same seed and prompt: same text on another server; ids differ.
func TestResponsesDeterministic(t *testing.T) {
	_, url1 := startSim(t, fastConfig())
	_, url2 := startSim(t, fastConfig())
	body := respBody(words("w", 40), 12, "")
	_, b1 := postRead(t, url1+"/v1/responses", body)
	_, b2 := postRead(t, url2+"/v1/responses", body)
	r1, r2 := decode[wireResponse](t, b1), decode[wireResponse](t, b2)
	if r1.text() == "" || r1.text() != r2.text() {
		t.Errorf("texts differ: %q vs %q", r1.text(), r2.text())
	}
	if r1.ID == r2.ID {
		t.Errorf("two servers minted the same id %s", r1.ID)
	}
	_, b3 := postRead(t, url1+"/v1/responses", body)
	if r3 := decode[wireResponse](t, b3); r3.ID == r1.ID {
		t.Errorf("one server minted id %s twice", r1.ID)
	}
}

func TestResponsesBadRequests(t *testing.T) {
	_, url := startSim(t, fastConfig())
	cases := []struct {
		name, body, param string
		status            int
	}{
		{"bad json", `{"model":`, "", 400},
		{"no model", `{"input":"x"}`, "model", 400},
		{"no input", `{"model":"sim-model"}`, "input", 400},
		{"input number", `{"model":"sim-model","input":3}`, "input", 400},
		{"item not object", `{"model":"sim-model","input":["x"]}`, "input[0]", 400},
		{"no role", `{"model":"sim-model","input":[{"content":"x"}]}`, "input[0].role", 400},
		{"bad role", `{"model":"sim-model","input":[{"role":"robot","content":"x"}]}`, "input[0].role", 400},
		{"no content", `{"model":"sim-model","input":[{"role":"user"}]}`, "input[0].content", 400},
		{"content number", `{"model":"sim-model","input":[{"role":"user","content":1}]}`, "input[0].content", 400},
		{"part text number", `{"model":"sim-model","input":[{"role":"user","content":[{"type":"input_text","text":1}]}]}`, "input[0].content", 400},
		{"zero max", respBody("x", 0, `,"max_output_tokens":0`), "max_output_tokens", 400},
		{"max string", respBody("x", 0, `,"max_output_tokens":"5"`), "max_output_tokens", 400},
		{"temperature", respBody("x", 1, `,"temperature":3`), "temperature", 400},
		{"top_p", respBody("x", 1, `,"top_p":-1`), "top_p", 400},
		{"stream type", respBody("x", 1, `,"stream":"yes"`), "stream", 400},
		{"metadata", respBody("x", 1, `,"metadata":{"k":1}`), "metadata", 400},
		{"background", respBody("x", 1, `,"background":true`), "background", 400},
		{"truncation", respBody("x", 1, `,"truncation":"middle"`), "truncation", 400},
		{"tools", respBody("x", 1, `,"tools":{}`), "tools", 400},
		{"too long", respBody("x", 70000, ""), "input", 400},
		{"wrong model", `{"model":"gpt-9","input":"x"}`, "", 404},
	}
	for _, tc := range cases {
		status, body := postRead(t, url+"/v1/responses", tc.body)
		if status != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, status, tc.status, body)
			continue
		}
		e := decode[errorBody](t, body)
		param := ""
		if e.Error.Param != nil {
			param = *e.Error.Param
		}
		if param != tc.param || e.Error.Type != "invalid_request_error" || e.Error.Message == "" ||
			strings.Contains(e.Error.Message, "Go ") || strings.Contains(e.Error.Message, "struct") {
			t.Errorf("%s: error body %s", tc.name, body)
		}
	}
	// Accepted although unusual: null fields, empty input, background false.
	for _, body := range []string{
		respBody("", 1, `,"background":false,"instructions":null,"metadata":null,"tools":null`),
		`{"model":"sim-model","input":[],"max_output_tokens":1,"store":false}`,
	} {
		if status, b := postRead(t, url+"/v1/responses", body); status != 200 {
			t.Errorf("%s: %d %s", body, status, b)
		}
	}
}

func TestResponsesInstant(t *testing.T) {
	_, url := startSim(t, Config{Instant: true})
	status, body := postRead(t, url+"/v1/responses", respBody("a b c", 50, ""))
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	r := decode[wireResponse](t, body)
	if r.text() != "the sluice gate opens " || r.Status != "completed" || r.Usage.InputTokens != 3 || r.Usage.OutputTokens != 4 {
		t.Errorf("instant: %s", body)
	}
}
