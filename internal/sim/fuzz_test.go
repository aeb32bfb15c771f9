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
