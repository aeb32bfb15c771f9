package sim

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
)

func TestChatCompletionShape(t *testing.T) {
	s, url := startSim(t, fastConfig())
	status, body := postRead(t, url+"/v1/chat/completions", chatBody("hello there  big\tworld", 7, ""))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	got := decode[chatCompletion](t, body)
	if got.Object != "chat.completion" || got.Model != "sim-model" || !strings.HasPrefix(got.ID, "chatcmpl-") || got.Created == 0 {
		t.Errorf("bad envelope: %+v", got)
	}
	if len(got.Choices) != 1 {
		t.Fatalf("choices: %+v", got.Choices)
	}
	c := got.Choices[0]
	if c.Message.Role != "assistant" || c.FinishReason != "length" {
		t.Errorf("bad choice: %+v", c)
	}
	if n := len(strings.Fields(c.Message.Content)); n != 7 || strings.Count(c.Message.Content, " ") != 7 {
		t.Errorf("content %q: want 7 words each followed by a space", c.Message.Content)
	}
	if got.Usage.PromptTokens != 4 || got.Usage.CompletionTokens != 7 || got.Usage.TotalTokens != 11 {
		t.Errorf("usage %+v, want 4+7", got.Usage)
	}
	for _, key := range []string{`"logprobs":null`, `"finish_reason":"length"`, `"index":0`} {
		if !bytes.Contains(body, []byte(key)) {
			t.Errorf("body lacks %s: %s", key, body)
		}
	}
	waitFor(t, "completion counted", func() bool { return s.Stats().Completed == 1 })
	st := s.Stats()
	if st.Requests != 1 || st.Completed != 1 || st.PromptTokens != 4 || st.GeneratedTokens != 7 {
		t.Errorf("stats %+v", st)
	}
	waitFor(t, "engine idle", func() bool { st := s.Stats(); return st.Running == 0 && st.KVUsage == 0 })
}

func TestChatContentParts(t *testing.T) {
	_, url := startSim(t, fastConfig())
	body := `{"messages":[{"role":"system","content":"be brief"},
		{"role":"user","content":[{"type":"text","text":"one two"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":" three "}]},
		{"role":"assistant","content":null}],"max_completion_tokens":3,"max_tokens":99}`
	status, b := postRead(t, url+"/v1/chat/completions", body)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, b)
	}
	got := decode[chatCompletion](t, b)
	if got.Usage.PromptTokens != 5 || got.Usage.CompletionTokens != 3 {
		t.Errorf("usage %+v: want 5 prompt words, max_completion_tokens=3 winning over max_tokens", got.Usage)
	}
}

func TestTextCompletionPromptShapes(t *testing.T) {
	_, url := startSim(t, fastConfig())
	cases := []struct {
		prompt string
		want   int
	}{
		{`"a b c"`, 3},
		{`["a b", "c d e"]`, 5},
		{`[1, 2, 3, 4]`, 4},
		{`[[1, 2], [3]]`, 3},
	}
	for _, tc := range cases {
		status, b := postRead(t, url+"/v1/completions", `{"model":"sim-model","prompt":`+tc.prompt+`}`)
		if status != http.StatusOK {
			t.Fatalf("prompt %s: status %d: %s", tc.prompt, status, b)
		}
		got := decode[textCompletion](t, b)
		if got.Object != "text_completion" || !strings.HasPrefix(got.ID, "cmpl-") {
			t.Errorf("envelope %+v", got)
		}
		if got.Usage.PromptTokens != tc.want || got.Usage.CompletionTokens != DefaultOutputTokens {
			t.Errorf("prompt %s: usage %+v, want %d prompt and the default %d output", tc.prompt, got.Usage, tc.want, DefaultOutputTokens)
		}
		if n := len(strings.Fields(got.Choices[0].Text)); n != DefaultOutputTokens {
			t.Errorf("text has %d words", n)
		}
	}
}

func TestStreamFraming(t *testing.T) {
	for _, kind := range []string{"chat", "text"} {
		t.Run(kind, func(t *testing.T) {
			_, url := startSim(t, fastConfig())
			path, body := "/v1/chat/completions", chatBody("tell me a story", 5, `,"stream":true,"stream_options":{"include_usage":true}`)
			if kind == "text" {
				path, body = "/v1/completions", `{"prompt":"tell me a story","max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}`
			}
			resp := post(t, t.Context(), url+path, body)
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("Content-Type %q", ct)
			}
			raw := readAll(t, resp)
			events := sseEvents(t, raw)
			// 5 tokens, the finish event, the usage event, [DONE].
			if len(events) != 8 || events[7] != "[DONE]" {
				t.Fatalf("events: %q", events)
			}
			var text strings.Builder
			for i, ev := range events[:7] {
				var compact bytes.Buffer
				if err := json.Compact(&compact, []byte(ev)); err != nil || compact.String() != ev {
					t.Fatalf("event %d is not compact JSON: %q (%v)", i, ev, err)
				}
				c := decode[chunk](t, []byte(ev))
				wantObj := map[string]string{"chat": "chat.completion.chunk", "text": "text_completion"}[kind]
				if c.Object != wantObj || c.Model != "sim-model" || c.ID == "" {
					t.Errorf("event %d envelope: %s", i, ev)
				}
				switch {
				case i < 5:
					if len(c.Choices) != 1 || c.Choices[0].FinishReason != nil || c.Usage != nil {
						t.Errorf("token event %d: %s", i, ev)
					}
					if kind == "chat" && (c.Choices[0].Delta.Role == "assistant") != (i == 0) {
						t.Errorf("role must be on the first chunk only: %s", ev)
					}
					text.WriteString(c.Choices[0].Delta.Content + c.Choices[0].Text)
				case i == 5:
					if len(c.Choices) != 1 || c.Choices[0].FinishReason == nil || *c.Choices[0].FinishReason != "length" {
						t.Errorf("finish event: %s", ev)
					}
				case i == 6:
					if !strings.Contains(ev, `"choices":[]`) || c.Usage == nil || c.Usage.PromptTokens != 4 || c.Usage.CompletionTokens != 5 || c.Usage.TotalTokens != 9 {
						t.Errorf("usage event: %s", ev)
					}
				}
			}
			// The stream says exactly what the non-streaming answer says.
			status, whole := postRead(t, url+path, strings.Replace(body, `"stream":true`, `"stream":false`, 1))
			if status != http.StatusOK {
				t.Fatal(status)
			}
			want := ""
			if kind == "chat" {
				want = decode[chatCompletion](t, whole).Choices[0].Message.Content
			} else {
				want = decode[textCompletion](t, whole).Choices[0].Text
			}
			if text.String() != want {
				t.Errorf("streamed %q, non-streamed %q", text.String(), want)
			}
		})
	}
}

func TestStreamWithoutUsage(t *testing.T) {
	_, url := startSim(t, fastConfig())
	status, raw := postRead(t, url+"/v1/chat/completions", chatBody("x", 3, `,"stream":true`))
	if status != http.StatusOK {
		t.Fatal(status)
	}
	events := sseEvents(t, raw)
	if len(events) != 5 || events[4] != "[DONE]" || strings.Contains(string(raw), `"usage"`) {
		t.Fatalf("want 3 tokens, finish, [DONE] and no usage: %q", events)
	}
}

func TestDeterministicText(t *testing.T) {
	cfg := fastConfig()
	_, a := startSim(t, cfg)
	_, b := startSim(t, cfg)
	cfg.Seed++
	_, c := startSim(t, cfg)
	content := func(url, prompt string, n int) string {
		status, body := postRead(t, url+"/v1/chat/completions", chatBody(prompt, n, ""))
		if status != http.StatusOK {
			t.Fatal(status)
		}
		return decode[chatCompletion](t, body).Choices[0].Message.Content
	}
	x := content(a, "what is a sluice", 20)
	if y := content(b, "what   is a\nsluice", 20); y != x {
		t.Errorf("same seed and words, different text:\n%q\n%q", x, y)
	}
	if y := content(a, "what is a sluice", 8); !strings.HasPrefix(x, y) {
		t.Errorf("a shorter answer should be a prefix of the longer: %q vs %q", y, x)
	}
	if y := content(c, "what is a sluice", 20); y == x {
		t.Errorf("different seeds gave the same text %q", x)
	}
	if y := content(a, "what is a lock", 20); y == x {
		t.Errorf("different prompts gave the same text %q", x)
	}
}

func TestBadRequests(t *testing.T) {
	_, url := startSim(t, fastConfig())
	cases := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"bad json", "/v1/chat/completions", `{"messages":`, 400, "invalid_request"},
		{"no messages", "/v1/chat/completions", `{"model":"sim-model"}`, 400, "invalid_request"},
		{"bad content", "/v1/chat/completions", `{"messages":[{"role":"user","content":7}]}`, 400, "invalid_request"},
		{"zero max_tokens", "/v1/chat/completions", chatBody("x", 0, ""), 400, "invalid_request"},
		{"no prompt", "/v1/completions", `{"max_tokens":1}`, 400, "invalid_request"},
		{"bad prompt", "/v1/completions", `{"prompt":{"a":1}}`, 400, "invalid_request"},
		{"wrong model", "/v1/chat/completions", `{"model":"gpt-9","messages":[]}`, 404, "model_not_found"},
		{"wrong model text", "/v1/completions", `{"model":"gpt-9","prompt":"x"}`, 404, "model_not_found"},
		{"too long", "/v1/chat/completions", chatBody("x", 70000, ""), 400, "context_length_exceeded"},
		{"embeddings bad json", "/v1/embeddings", `[`, 400, "invalid_request"},
		{"embeddings wrong model", "/v1/embeddings", `{"model":"m2","input":"x"}`, 404, "model_not_found"},
	}
	for _, tc := range cases {
		status, body := postRead(t, url+tc.path, tc.body)
		if status != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, status, tc.status, body)
			continue
		}
		e := decode[errorBody](t, body)
		if e.Error.Code == nil || *e.Error.Code != tc.code || e.Error.Message == "" || e.Error.Type == "" {
			t.Errorf("%s: error body %s", tc.name, body)
		}
	}
}

func TestModelsHealthEmbeddings(t *testing.T) {
	_, url := startSim(t, Config{Model: "m-1", Seed: 3})
	status, body := getRead(t, url+"/v1/models")
	if status != 200 || !strings.Contains(string(body), `"id":"m-1"`) || !strings.Contains(string(body), `"object":"list"`) {
		t.Errorf("models: %d %s", status, body)
	}
	if status, body := getRead(t, url+"/health"); status != 200 || string(body) != "ok" {
		t.Errorf("health: %d %q", status, body)
	}
	status, body = postRead(t, url+"/v1/embeddings", `{"model":"m-1","input":["a b c","d"]}`)
	if status != 200 {
		t.Fatalf("embeddings: %d %s", status, body)
	}
	got := decode[embeddingResponse](t, body)
	if len(got.Data) != 2 || len(got.Data[0].Embedding) != embeddingDim || got.Usage.PromptTokens != 4 || got.Data[1].Index != 1 {
		t.Fatalf("embeddings: %s", body)
	}
	var norm float64
	for _, x := range got.Data[0].Embedding {
		norm += float64(x) * float64(x)
	}
	if norm < 0.99 || norm > 1.01 {
		t.Errorf("embedding not unit length: %v", norm)
	}
	_, again := postRead(t, url+"/v1/embeddings", `{"input":"a  b c"}`)
	if g := decode[embeddingResponse](t, again); g.Data[0].Embedding[0] != got.Data[0].Embedding[0] {
		t.Errorf("embedding not deterministic")
	}
}

// encoding_format "base64" (what the official Node SDK sends whenever its
// caller names none) answers the same vectors as float32s, little-endian,
// base64-encoded, as vLLM and OpenAI do; "float" and null answer floats; any
// other value is a 400 naming the field. The simulator used to ignore the
// field and answer floats to all.
func TestEmbeddingsEncodingFormat(t *testing.T) {
	_, url := startSim(t, Config{Model: "m", Seed: 3})
	_, body := postRead(t, url+"/v1/embeddings", `{"model":"m","input":["a b c","d"]}`)
	want := decode[embeddingResponse](t, body)
	status, body := postRead(t, url+"/v1/embeddings", `{"model":"m","input":["a b c","d"],"encoding_format":"base64"}`)
	if status != 200 {
		t.Fatalf("base64: %d %s", status, body)
	}
	var got struct {
		Object, Model string
		Data          []struct {
			Object, Embedding string
			Index             int
		}
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("base64: %v: %.200s", err, body)
	}
	if len(got.Data) != 2 || got.Object != "list" || got.Model != "m" || !strings.Contains(string(body), `"prompt_tokens":4`) {
		t.Fatalf("base64: %s", body)
	}
	for i, d := range got.Data {
		raw, err := base64.StdEncoding.DecodeString(d.Embedding)
		if err != nil || len(raw) != 4*embeddingDim || d.Index != i || d.Object != "embedding" {
			t.Fatalf("data[%d]: %q (%v)", i, d.Embedding, err)
		}
		for j := range embeddingDim {
			if x := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:])); x != want.Data[i].Embedding[j] {
				t.Fatalf("data[%d][%d] = %v, want %v (the float answer's)", i, j, x, want.Data[i].Embedding[j])
			}
		}
	}
	for _, f := range []string{`"float"`, `null`} {
		status, body := postRead(t, url+"/v1/embeddings", `{"model":"m","input":"d","encoding_format":`+f+`}`)
		if g := decode[embeddingResponse](t, body); status != 200 || len(g.Data) != 1 || g.Data[0].Embedding[0] != want.Data[1].Embedding[0] {
			t.Errorf("encoding_format %s: %d %s", f, status, body)
		}
	}
	status, body = postRead(t, url+"/v1/embeddings", `{"model":"m","input":"d","encoding_format":"int8"}`)
	if e := decode[errorBody](t, body); status != 400 || e.Error.Param == nil || *e.Error.Param != "encoding_format" {
		t.Errorf("encoding_format int8: %d %s", status, body)
	}
}

func TestUsageAndChunkBytesMatchEncodingJSON(t *testing.T) {
	for _, u := range []usage{newUsage(3, 4, 0), newUsage(30, 1, 16)} {
		want, _ := json.Marshal(u)
		if got := appendUsage(nil, u); string(got) != string(want) {
			t.Errorf("appendUsage %s, json %s", got, want)
		}
	}
	enc := newChunkEncoder(kindChat, `id"x`, 7, []byte(`"m\"1"`))
	ev := string(enc.token(nil, "word", true))
	want := `data: {"id":"id\"x","object":"chat.completion.chunk","created":7,"model":"m\"1","choices":[{"index":0,"delta":{"role":"assistant","content":"word "},"logprobs":null,"finish_reason":null}]}` + "\n\n"
	if ev != want {
		t.Errorf("token event\n got %s\nwant %s", ev, want)
	}
}

func readAll(t testing.TB, resp *http.Response) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return b.Bytes()
}

// TestEmbeddingsInputCountBounded: more inputs than OpenAI's 2048 are
// refused with a 400 naming input, before a reply sized by the client's
// count is built (1M inputs built about 500 MB and took minutes).
func TestEmbeddingsInputCountBounded(t *testing.T) {
	const openAIMax = 2048
	_, url := startSim(t, Config{Model: "m", Seed: 3})
	body := func(n int) string {
		return `{"model":"m","input":[` + strings.TrimSuffix(strings.Repeat(`"a",`, n), ",") + `]}`
	}
	status, b := postRead(t, url+"/v1/embeddings", body(openAIMax))
	if status != 200 || len(decode[embeddingResponse](t, b).Data) != openAIMax {
		t.Fatalf("%d inputs: %d %.200s", openAIMax, status, b)
	}
	for _, n := range []int{openAIMax + 1, 200_000} {
		status, b = postRead(t, url+"/v1/embeddings", body(n))
		var e struct {
			Error struct {
				Param string `json:"param"`
			} `json:"error"`
		}
		if status != 400 || json.Unmarshal(b, &e) != nil || e.Error.Param != "input" {
			t.Fatalf("%d inputs: %d %.200s", n, status, b)
		}
	}
}
