package sim

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func FuzzParseRequest(f *testing.F) {
	for _, seed := range []string{
		`{"model":"sim-model","messages":[{"role":"user","content":"hello world"}],"max_tokens":4}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"a b"},{"type":"image_url"}]},{"role":"assistant","content":null}]}`,
		`{"prompt":["a b","c"],"stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":2}`,
		`{"prompt":[[1,2],[3]]}`,
		`{"prompt":[1,2,3],"max_tokens":0}`,
		`{"prompt":"  \u00a0x\ty  ","max_tokens":-1}`,
		`{"messages":[{"content":"\xff\xfe words"}]}`,
		`{`, `[]`, `null`, `{"prompt":{}}`,
	} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, body string, chat bool) {
		kind := kindCompletion
		if chat {
			kind = kindChat
		}
		req, err := parseRequest(kind, []byte(body), 4, 16)
		if err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("error %v does not wrap errBadRequest", err)
			}
			return
		}
		if req.maxTokens < 1 || req.promptTokens < 0 {
			t.Fatalf("accepted invalid sizes: %+v", req)
		}
		if len(req.blocks) != req.promptTokens/4 {
			t.Fatalf("%d tokens gave %d blocks of 4", req.promptTokens, len(req.blocks))
		}
		// Cross-check the word count against strings.Fields for plain
		// string prompts and contents.
		var wr struct {
			Prompt   string `json:"prompt"`
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		if json.Unmarshal([]byte(body), &wr) == nil {
			want := len(strings.Fields(wr.Prompt))
			if chat {
				want = 0
				for _, m := range wr.Messages {
					want += len(strings.Fields(m.Content))
				}
			}
			if req.promptTokens != want {
				t.Fatalf("counted %d prompt tokens, strings.Fields says %d", req.promptTokens, want)
			}
		}
	})
}

func FuzzParseResponsesRequest(f *testing.F) {
	for _, seed := range []string{
		`{"model":"sim-model","input":"hello world","max_output_tokens":4}`,
		`{"model":"m","instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"a b"},{"type":"input_image"}]},{"type":"function_call_output","output":"x"}]}`,
		`{"model":"m","input":[{"role":"assistant","content":"x y"}],"stream":true,"store":false,"previous_response_id":"resp_1"}`,
		`{"model":"m","input":[{"role":"robot","content":"x"}]}`,
		`{"model":"m","input":"x","metadata":{"a":"b"},"tools":[],"tool_choice":"none","text":{"format":{"type":"text"}}}`,
		`{"model":"m","input":"x","max_output_tokens":0}`, `{"model":"m","input":"x","temperature":2.5}`,
		`{"model":"m","input":"x","background":true}`, `{"model":"m","input":[1]}`,
		`{`, `[]`, `null`, `{"model":"m","input":{}}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		rq, err := parseResponsesRequest([]byte(body))
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) || re.msg == "" {
				t.Fatalf("error %v is not a requestError with a message", err)
			}
			return
		}
		if rq.model == "" || (rq.maxOutput != nil && *rq.maxOutput < 1) || !(rq.temperature >= 0 && rq.temperature <= 2) {
			t.Fatalf("accepted invalid request: %+v", rq)
		}
		// The items and their counted texts agree with a plain decode (into
		// structs, so keys match case-insensitively as in the parser).
		want := 0
		var in struct {
			Input json.RawMessage `json:"input"`
		}
		if json.Unmarshal([]byte(body), &in) != nil {
			t.Fatalf("accepted a body encoding/json refuses")
		}
		var s string
		var items []struct {
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
		}
		switch {
		case json.Unmarshal(in.Input, &s) == nil:
			want = len(strings.Fields(s))
			if len(rq.items) != 1 {
				t.Fatalf("string input gave %d items", len(rq.items))
			}
		case json.Unmarshal(in.Input, &items) == nil:
			if len(rq.items) != len(items) {
				t.Fatalf("%d input items gave %d", len(items), len(rq.items))
			}
			for _, it := range items {
				if it.Type != "" && it.Type != "message" {
					continue
				}
				var parts []contentPart
				if json.Unmarshal(it.Content, &s) == nil {
					want += len(strings.Fields(s))
				} else if json.Unmarshal(it.Content, &parts) == nil {
					for _, p := range parts {
						if p.Type == "input_text" || p.Type == "output_text" {
							want += len(strings.Fields(p.Text))
						}
					}
				} else {
					t.Fatalf("accepted content %s", it.Content)
				}
			}
		default:
			t.Fatalf("accepted input %s", in.Input)
		}
		sc := respPrompt(nil, nil, rq.texts, 4)
		if sc.tokens != want || len(sc.blocks) != sc.tokens/4 {
			t.Fatalf("counted %d tokens (%d blocks), strings.Fields says %d", sc.tokens, len(sc.blocks), want)
		}
	})
}
