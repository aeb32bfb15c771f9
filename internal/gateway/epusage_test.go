package gateway

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/sim"
)

// usageCase is a model-addressed endpoint answered with a real backend's
// usage shape, and the tokens the gateway must record of it (known false:
// the answer reports none it can use, and the estimate stands).
type usageCase struct {
	name, path, answer string
	known              bool
	in, out            int
}

// manyResults is a rerank's results over the relay's 4 KiB tail: vLLM
// writes its usage before them.
var manyResults = rerankResults(60)

// hugeResults is over the 256 KiB an answer is held whole to check.
var hugeResults = rerankResults(2500)

func rerankResults(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"index":` + strconv.Itoa(i) + `,"document":{"text":"` + strings.Repeat("a document ", 10) + `"},"relevance_score":0.5}`)
	}
	return b.String()
}

var usageCases = []usageCase{
	// vLLM <= 0.10 (RerankUsage: total_tokens only).
	{"rerank total only", "/v1/rerank", `{"id":"rerank-1","model":"m1","usage":{"total_tokens":37},"results":[{"index":0,"document":{"text":"a"},"relevance_score":0.9}]}`, true, 37, 0},
	// vLLM main (vllm/entrypoints/pooling/scoring/protocol.py: prompt_tokens, total_tokens).
	{"rerank prompt and total", "/rerank", `{"id":"rerank-2","model":"m1","usage":{"prompt_tokens":41,"total_tokens":41},"results":[{"index":0,"document":{"text":"a"},"relevance_score":0.9}]}`, true, 41, 0},
	{"rerank usage before 8 KiB of results", "/v2/rerank", `{"id":"rerank-3","model":"m1","usage":{"total_tokens":523},"results":[` + manyResults + `]}`, true, 523, 0},
	{"rerank usage before 300 KiB of results", "/v1/rerank", `{"id":"rerank-4","model":"m1","usage":{"prompt_tokens":9000,"total_tokens":9000},"results":[` + hugeResults + `]}`, true, 9000, 0},
	// UsageInfo: prompt_tokens, total_tokens, completion_tokens 0.
	{"score", "/v1/score", `{"id":"score-1","object":"list","created":1,"model":"m1","data":[{"index":0,"object":"score","score":0.5}],"usage":{"prompt_tokens":21,"total_tokens":21,"completion_tokens":0,"prompt_tokens_details":null}}`, true, 21, 0},
	{"classify", "/classify", `{"id":"classify-1","object":"list","created":1,"model":"m1","data":[{"index":0,"label":"LABEL_0","probs":[0.9,0.1],"num_classes":2}],"usage":{"prompt_tokens":9,"total_tokens":9,"completion_tokens":0}}`, true, 9, 0},
	{"pooling", "/pooling", `{"id":"pool-1","object":"list","created":1,"model":"m1","data":[{"index":0,"object":"pooling","data":[0.1,0.2]}],"usage":{"prompt_tokens":5,"total_tokens":5,"completion_tokens":0}}`, true, 5, 0},
	// OpenAI's moderations report no usage.
	{"moderations", "/v1/moderations", `{"id":"modr-1","model":"m1","results":[{"flagged":false,"categories":{},"category_scores":{}}]}`, false, 0, 0},
	// OpenAI's gpt-4o-transcribe: token usage, its input's details nested before output_tokens.
	{"transcription tokens", "/v1/audio/transcriptions", `{"text":"a sluice gate","usage":{"type":"tokens","input_tokens":14,"input_token_details":{"text_tokens":2,"audio_tokens":12},"output_tokens":45,"total_tokens":59}}`, true, 14, 45},
	// whisper-1 and vLLM: the audio's duration, no tokens.
	{"transcription duration", "/v1/audio/transcriptions", `{"text":"a sluice gate","usage":{"type":"duration","seconds":9}}`, false, 0, 0},
	{"translation", "/v1/audio/translations", `{"text":"a sluice gate"}`, false, 0, 0},
	{"tokenize", "/tokenize", `{"count":3,"max_model_len":4096,"tokens":[1,2,3]}`, false, 0, 0},
}

// usageGateway serves cfg on a frozen clock (the token bucket does not
// refill between requests) with the access log into logs.
func usageGateway(t *testing.T, cfg *config.Config) (*httptest.Server, *prometheus.Registry, *lockedBuffer) {
	t.Helper()
	cfg.Log.Access = true
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	// Frozen at the wall clock's now: the request body's read deadlines
	// are set on the connection from this clock (netguard.TimedBody).
	clk := &frozenClock{now: time.Now()}
	reg := prometheus.NewRegistry()
	deps := Deps{Logger: log, Transport: proxy.NewTransportCache(), Now: clk.Now, Rand: routing.NewRand(1), Registry: reg}
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	srv := httptest.NewServer(New(rt, Options{Logger: log, Registry: reg, Now: deps.Now}))
	t.Cleanup(func() {
		srv.Close()
		deps.Transport.CloseIdle()
		rt.Retire(nil)
	})
	return srv, reg, logs
}

// tokensTotal is sluice_tokens_total{direction} for m1, and whether it
// was ever counted.
func tokensTotal(t *testing.T, reg *prometheus.Registry, direction string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_tokens_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["model"] == "m1" && labels["direction"] == direction {
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

// accessTokens is the tokens_in and tokens_out of the access line of the
// request to path (0 when the line has none).
func accessTokens(t *testing.T, logs string, path string) (in, out int) {
	t.Helper()
	l := accessLine(t, logs, path)
	return l.TokensIn, l.TokensOut
}

// tokenFields is an access line's token counts, nil when absent.
type tokenFields struct {
	TokensIn, TokensOut int
	in, out             *int
}

// accessLine reads the token fields of the access line of the request
// to path.
func accessLine(t *testing.T, logs string, path string) tokenFields {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var l struct {
			Msg       string `json:"msg"`
			Path      string `json:"path"`
			TokensIn  *int   `json:"tokens_in"`
			TokensOut *int   `json:"tokens_out"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "request" && l.Path == path {
			f := tokenFields{in: l.TokensIn, out: l.TokensOut}
			if f.in != nil {
				f.TokensIn = *f.in
			}
			if f.out != nil {
				f.TokensOut = *f.out
			}
			return f
		}
	}
	t.Fatalf("no access line for %s in:\n%s", path, logs)
	return tokenFields{}
}

// Each endpoint's answer settles the token limit's reservation with the
// tokens its backend reported in that endpoint's usage shape, and counts
// them in sluice_tokens_total and the access line; an answer with no
// token count (moderations, a duration, none) keeps the estimate, counts
// nothing and logs no tokens_in/tokens_out (unknown, not 0). The reservation settled is read from the remaining
// tokens a second request (a tokenize: charged 1, no usage) is told of.
func TestEndpointUsageShapes(t *testing.T) {
	for _, tc := range usageCases {
		t.Run(tc.name, func(t *testing.T) {
			be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				if r.URL.Path == "/tokenize" && tc.path != "/tokenize" {
					io.WriteString(w, `{"count":1,"max_model_len":4096,"tokens":[1]}`)
					return
				}
				io.WriteString(w, tc.answer)
			}))
			t.Cleanup(be.Close)
			cfg := testConfig(be.URL)
			const limit = 100000
			tpm := int64(limit)
			cfg.RateLimits.PerKey = config.RateRule{TokensPerMinute: &tpm}
			srv, reg, logs := usageGateway(t, cfg)

			var resp *http.Response
			if strings.HasPrefix(tc.path, "/v1/audio/") {
				ct, body := audioForm(t, "file", strings.Repeat("x", 3200), "model", "m1")
				resp = post(t, srv.URL+tc.path, body, "Authorization", "Bearer k", "Content-Type", ct)
			} else {
				resp = post(t, srv.URL+tc.path, `{"model":"m1","query":"q","documents":["a"],"text_1":"a","text_2":"b","input":"x","prompt":"p"}`,
					"Authorization", "Bearer k")
			}
			if body := readAll(t, resp); resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", tc.path, resp.StatusCode, body)
			}
			left, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
			estimate := limit - left
			resp = post(t, srv.URL+"/tokenize", `{"model":"m1","prompt":"p"}`, "Authorization", "Bearer k")
			if body := readAll(t, resp); resp.StatusCode != 200 {
				t.Fatalf("tokenize: %d %s", resp.StatusCode, body)
			}
			left2, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
			settled := limit - 1 - left2
			in, _ := tokensTotal(t, reg, "in")
			out, _ := tokensTotal(t, reg, "out")
			logIn, logOut := accessTokens(t, logs.String(), tc.path)
			t.Logf("%s: estimate %d, settled %d; sluice_tokens_total in %v out %v; access tokens_in %d tokens_out %d",
				tc.path, estimate, settled, in, out, logIn, logOut)

			if !tc.known {
				if settled != estimate || in != 0 || out != 0 {
					t.Fatalf("no usable usage: settled %d (estimate %d), tokens counted in %v out %v", settled, estimate, in, out)
				}
				if l := accessLine(t, logs.String(), tc.path); l.in != nil || l.out != nil {
					t.Fatalf("no usable usage, yet the access line logs tokens_in %d tokens_out %d (want them absent: unknown)", l.TokensIn, l.TokensOut)
				}
				return
			}
			if settled != tc.in+tc.out {
				t.Fatalf("settled %d tokens (estimate %d), the backend reported %d", settled, estimate, tc.in+tc.out)
			}
			if in != float64(tc.in) || out != float64(tc.out) || logIn != tc.in || logOut != tc.out {
				t.Fatalf("counted in %v out %v, logged in %d out %d; want %d and %d", in, out, logIn, logOut, tc.in, tc.out)
			}
		})
	}
}

// Through the simulator, which answers in vLLM's shapes: a rerank whose
// results outrun the relay's tail settles the limit at the tokens its
// usage reports (written before the results); a transcription reports
// its audio's seconds, no tokens, and keeps its estimate.
func TestEndpointUsageFromSimulator(t *testing.T) {
	_, be := simBackend(t, sim.Config{Model: "m1", DecodeStepBase: time.Millisecond, Seed: 7})
	cfg := testConfig(be.URL)
	const limit = 100000
	tpm := int64(limit)
	cfg.RateLimits.PerKey = config.RateRule{TokensPerMinute: &tpm}
	cfg.Auth.Keys = []config.Tenant{{Key: "k1"}, {Key: "k2"}} // a bucket each
	srv, reg, _ := usageGateway(t, cfg)
	settled := func(key string) int {
		t.Helper()
		resp := post(t, srv.URL+"/tokenize", `{"model":"m1","prompt":"p"}`, "Authorization", "Bearer "+key)
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("tokenize: %d %s", resp.StatusCode, body)
		}
		left, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		return limit - 1 - left
	}

	docs := make([]string, 50)
	for i := range docs {
		docs[i] = strings.Repeat("the sluice gate ", 6) + strconv.Itoa(i)
	}
	docsJSON, _ := json.Marshal(docs)
	resp := post(t, srv.URL+"/v1/rerank", `{"model":"m1","query":"sluice gate","documents":`+string(docsJSON)+`}`, "Authorization", "Bearer k1")
	body := readAll(t, resp)
	var rr struct {
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(body), &rr); err != nil || resp.StatusCode != 200 || len(body) < 8<<10 || rr.Usage.PromptTokens == 0 {
		t.Fatalf("rerank: %d, %d bytes, %v: %.300s", resp.StatusCode, len(body), err, body)
	}
	if got := settled("k1"); got != rr.Usage.PromptTokens {
		t.Fatalf("rerank settled %d tokens, its usage %d", got, rr.Usage.PromptTokens)
	}
	if in, _ := tokensTotal(t, reg, "in"); in != float64(rr.Usage.PromptTokens) {
		t.Fatalf("sluice_tokens_total{in} %v, the rerank's usage %d", in, rr.Usage.PromptTokens)
	}

	ct, form := audioForm(t, "file", strings.Repeat("x", 3200), "model", "m1")
	resp = post(t, srv.URL+"/v1/audio/transcriptions", form, "Authorization", "Bearer k2", "Content-Type", ct)
	if body := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(body, `"type":"duration"`) {
		t.Fatalf("transcription: %d %s", resp.StatusCode, body)
	}
	left, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if got, estimate := settled("k2"), limit-left; got != estimate {
		t.Fatalf("transcription settled %d tokens, want its estimate %d kept", got, estimate)
	}
	if in, _ := tokensTotal(t, reg, "in"); in != float64(rr.Usage.PromptTokens) {
		t.Fatalf("sluice_tokens_total{in} %v after a transcription reporting seconds, want the rerank's %d alone", in, rr.Usage.PromptTokens)
	}
}
