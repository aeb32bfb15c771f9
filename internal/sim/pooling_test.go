package sim

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestRerankShapeAndPrefill(t *testing.T) {
	s, url := startSim(t, fastConfig())
	for _, path := range []string{"/v1/rerank", "/rerank", "/v2/rerank"} {
		before := s.Stats().PromptTokens
		status, body := postRead(t, url+path, `{"model":"sim-model","query":"sluice gate","documents":["the river flows","the sluice gate opens","gate"],"top_n":2}`)
		if status != 200 {
			t.Fatalf("%s: %d %s", path, status, body)
		}
		got := decode[rerankResponse](t, body)
		// Each document is prefilled with the query: (2+3)+(2+4)+(2+1).
		if got.Model != "sim-model" || !strings.HasPrefix(got.ID, "rerank-sim-") || got.Usage.TotalTokens != 14 || got.Usage.PromptTokens != 14 || len(got.Results) != 2 {
			t.Fatalf("%s: %s", path, body)
		}
		// vLLM's key order: usage before the results (a reader of the
		// answer's end alone misses it).
		if u, r := strings.Index(string(body), `"usage":{"prompt_tokens":14,"total_tokens":14}`), strings.Index(string(body), `"results"`); u < 0 || u > r {
			t.Fatalf("%s: usage not vLLM's RerankUsage before the results: %s", path, body)
		}
		if got.Results[0].Index != 1 || got.Results[0].Document.Text != "the sluice gate opens" ||
			got.Results[0].RelevanceScore < got.Results[1].RelevanceScore || got.Results[1].Index != 2 {
			t.Fatalf("%s: ranked %s", path, body)
		}
		if d := s.Stats().PromptTokens - before; d != 14 {
			t.Fatalf("%s: the engine prefilled %d tokens, want 14", path, d)
		}
	}
}

func TestScoreClassifyPoolingModerationsShapes(t *testing.T) {
	_, url := startSim(t, fastConfig())
	status, body := postRead(t, url+"/score", `{"model":"sim-model","text_1":"a b","text_2":["a","c d"]}`)
	sc := decode[scoreResponse](t, body)
	if status != 200 || sc.Object != "list" || len(sc.Data) != 2 || sc.Data[1].Object != "score" || sc.Data[1].Index != 1 ||
		sc.Usage.PromptTokens != 7 || sc.Data[0].Score <= sc.Data[1].Score {
		t.Fatalf("score: %d %s", status, body)
	}
	status, body = postRead(t, url+"/v1/score", `{"text_1":["a","b"],"text_2":["a","b"]}`)
	if status != 200 || decode[scoreResponse](t, body).Usage.PromptTokens != 4 {
		t.Fatalf("score pairs: %d %s", status, body)
	}
	status, body = postRead(t, url+"/classify", `{"model":"sim-model","input":["good","bad day"]}`)
	cl := decode[classifyResponse](t, body)
	if status != 200 || len(cl.Data) != 2 || cl.Data[1].NumClasses != 2 || len(cl.Data[1].Probs) != 2 ||
		!strings.HasPrefix(cl.Data[0].Label, "LABEL_") || cl.Usage.PromptTokens != 3 || !strings.HasPrefix(cl.ID, "classify-sim-") {
		t.Fatalf("classify: %d %s", status, body)
	}
	status, body = postRead(t, url+"/pooling", `{"messages":[{"role":"user","content":"x y"}]}`)
	pl := decode[poolingResponse](t, body)
	if status != 200 || len(pl.Data) != 1 || pl.Data[0].Object != "pooling" || len(pl.Data[0].Data) != embeddingDim || pl.Usage.PromptTokens != 2 {
		t.Fatalf("pooling: %d %s", status, body)
	}
	status, body = postRead(t, url+"/v1/moderations", `{"input":["hello","there"]}`)
	md := decode[moderationResponse](t, body)
	if status != 200 || len(md.Results) != 2 || len(md.Results[0].CategoryScores) != len(moderationCategories) ||
		!strings.HasPrefix(md.ID, "modr-sim-") || md.Model != "sim-model" {
		t.Fatalf("moderations: %d %s", status, body)
	}
}

// About one moderation input in a hundred is flagged, as the simulator
// says: 1000 distinct inputs (the draws are seeded: a fixed count).
func TestModerationsFlagFew(t *testing.T) {
	_, url := startSim(t, fastConfig())
	in := make([]string, 1000)
	for i := range in {
		in[i] = "input number " + strconv.Itoa(i)
	}
	b, _ := json.Marshal(map[string]any{"input": in})
	status, body := postRead(t, url+"/v1/moderations", string(b))
	md := decode[moderationResponse](t, body)
	flagged := 0
	for _, r := range md.Results {
		if r.Flagged {
			flagged++
		}
	}
	if status != 200 || len(md.Results) != 1000 || flagged < 2 || flagged > 25 {
		t.Fatalf("%d: %d of %d inputs flagged, want about 10", status, flagged, len(md.Results))
	}
}

func TestTokenizeDetokenize(t *testing.T) {
	s, url := startSim(t, fastConfig())
	before := s.Stats().PromptTokens
	status, body := postRead(t, url+"/tokenize", `{"model":"sim-model","prompt":"the sluice  gate zzz"}`)
	tk := decode[tokenizeResponse](t, body)
	if status != 200 || tk.Count != 4 || tk.MaxModelLen != DefaultKVTokens || len(tk.Tokens) != 4 ||
		tk.Tokens[0] != 0 || tk.Tokens[1] != 17 || tk.Tokens[3] < len(vocabulary) || tk.Tokens[3] >= vocabSize {
		t.Fatalf("tokenize: %d %s", status, body)
	}
	_, again := postRead(t, url+"/tokenize", `{"messages":[{"role":"user","content":"the sluice gate zzz"}]}`)
	if g := decode[tokenizeResponse](t, again); g.Count != 4 || g.Tokens[3] != tk.Tokens[3] {
		t.Fatalf("tokenize is not deterministic across forms: %s then %s", body, again)
	}
	ids, _ := json.Marshal(tk.Tokens[:3])
	status, body = postRead(t, url+"/detokenize", `{"model":"sim-model","tokens":`+string(ids)+`}`)
	if status != 200 || decode[detokenizeResponse](t, body).Prompt != "the sluice gate" {
		t.Fatalf("detokenize: %d %s", status, body)
	}
	if d := s.Stats().PromptTokens - before; d != 0 {
		t.Fatalf("the tokenizer went through the engine: %d tokens", d)
	}
}

func TestPoolBadRequests(t *testing.T) {
	_, url := startSim(t, Config{Model: "m", KVTokens: 8, Seed: 1})
	for _, c := range []struct {
		path, body  string
		status      int
		code, param string
	}{
		{"/rerank", `{"query":"q"}`, 400, "invalid_request", "documents"},
		{"/rerank", `{"query":"q","documents":["a",1]}`, 400, "invalid_request", "documents[1]"},
		{"/rerank", `{"query":"q","documents":["a"],"top_n":-1}`, 400, "invalid_request", "top_n"},
		{"/rerank", `{"model":"x","query":"q","documents":["a"]}`, 404, "model_not_found", ""},
		{"/score", `{"text_1":["a","b"],"text_2":["a","b","c"]}`, 400, "invalid_request", "text_2"},
		{"/classify", `{"input":"a","messages":[]}`, 400, "invalid_request", "messages"},
		{"/v1/moderations", `{}`, 400, "invalid_request", "input"},
		{"/tokenize", `{"prompt":5}`, 400, "invalid_request", "prompt"},
		{"/detokenize", `{"tokens":[1,32000]}`, 400, "invalid_request", "tokens[1]"},
		{"/pooling", `{"input":"a b c d e f g h i"}`, 400, "context_length_exceeded", ""},
	} {
		status, body := postRead(t, url+c.path, c.body)
		e := decode[errorBody](t, body)
		if status != c.status || e.Error.Code == nil || *e.Error.Code != c.code ||
			(c.param != "" && (e.Error.Param == nil || *e.Error.Param != c.param)) {
			t.Errorf("%s %s: %d %s", c.path, c.body, status, body)
		}
	}
}

// FuzzParsePoolRequest: any body gets a request error or a request whose
// sizes hold together, for every endpoint.
func FuzzParsePoolRequest(f *testing.F) {
	for _, seed := range []string{
		`{"model":"m","query":"a b","documents":["a","b c"],"top_n":1}`,
		`{"text_1":"a","text_2":["b","c"]}`, `{"text_1":["a","b"],"text_2":["c","d"]}`,
		`{"input":["a",[1,2]]}`, `{"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
		`{"prompt":"x y","messages":null}`, `{"tokens":[0,1,31999]}`, `[`, `null`, `{"Model":1}`,
	} {
		for k := range poolDetokenize + 1 {
			f.Add(uint8(k), seed)
		}
	}
	f.Fuzz(func(t *testing.T, k uint8, body string) {
		kind := poolKind(k % uint8(poolDetokenize+1))
		req, err := parsePoolRequest(kind, []byte(body))
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a request error", err)
			}
			return
		}
		if req.promptTokens < 0 || req.topN < 0 {
			t.Fatalf("accepted invalid sizes: %+v", req)
		}
		switch kind {
		case poolRerank, poolScore:
			if len(req.items) == 0 || (len(req.pair) != 1 && len(req.pair) != len(req.items)) {
				t.Fatalf("accepted unpaired texts: %+v", req)
			}
		case poolDetokenize:
			for _, id := range req.tokens {
				if id < 0 || id >= vocabSize {
					t.Fatalf("accepted token id %d", id)
				}
			}
		default:
			if len(req.items) == 0 {
				t.Fatalf("accepted no input: %q", body)
			}
		}
		if kind == poolTokenize {
			for _, w := range strings.Fields(req.items[0].text) {
				if id := tokenIDOf(w); id < 0 || id >= vocabSize {
					t.Fatalf("word %q got id %d", w, id)
				}
			}
		}
	})
}
