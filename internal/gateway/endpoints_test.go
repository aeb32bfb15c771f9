package gateway

import (
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// endpointBodies is a valid request to each model-addressed endpoint, for
// model m2, with a word of the answer it must carry.
var endpointBodies = []struct{ path, body, want string }{
	{"/v1/rerank", `{"model":"m2","query":"sluice gate","documents":["a river","the sluice gate"],"top_n":1}`, `"relevance_score"`},
	{"/rerank", `{"model":"m2","query":"q","documents":["q"]}`, `"results"`},
	{"/v2/rerank", `{"model":"m2","query":"q","documents":["q","r"]}`, `"results"`},
	{"/v1/score", `{"model":"m2","text_1":"a","text_2":["a","b"]}`, `"object":"score"`},
	{"/score", `{"model":"m2","text_1":["a"],"text_2":["b"]}`, `"object":"score"`},
	{"/classify", `{"model":"m2","input":["good day"]}`, `"num_classes"`},
	{"/pooling", `{"model":"m2","input":"x y"}`, `"object":"pooling"`},
	{"/v1/moderations", `{"model":"m2","input":"hello"}`, `"category_scores"`},
	{"/tokenize", `{"model":"m2","prompt":"the sluice gate"}`, `"tokens":[0,17,21]`},
	{"/detokenize", `{"model":"m2","tokens":[0,17]}`, `"prompt":"the sluice"`},
}

// twoModelSims serves m1 and m2 from one simulator each behind a gateway;
// edit adjusts the config.
func twoModelSims(t *testing.T, edit func(*config.Config)) (*httptest.Server, *Gateway, *prometheus.Registry, map[string]*sim.Server) {
	t.Helper()
	sims := map[string]*sim.Server{}
	var urls []string
	for _, m := range []string{"m1", "m2"} {
		s, be := simBackend(t, sim.Config{Model: m, DecodeStepBase: time.Millisecond, Seed: 7})
		sims[m], urls = s, append(urls, be.URL)
	}
	cfg := testConfig(urls[0])
	cfg.Models = append(cfg.Models, config.Model{Name: "m2", Policy: "round_robin", Backends: []config.Backend{{URL: urls[1]}}})
	if edit != nil {
		edit(cfg)
	}
	var reg *prometheus.Registry
	srv, gw := startGatewayWith(t, cfg, func(d *Deps) {
		reg = d.Registry.(*prometheus.Registry)
		d.Cache = newTestTiered(t, cache.TieredOptions{}) // a cache to stay out of
	})
	return srv, gw, reg, sims
}

// errParam decodes an OpenAI error object (apiErr checks its shape) and
// returns its code and param.
func errParam(t *testing.T, body string) (code, param string) {
	t.Helper()
	_, code, _ = apiErr(t, body)
	var e struct {
		Error struct {
			Param *string `json:"param"`
		} `json:"error"`
	}
	json.Unmarshal([]byte(body), &e)
	if e.Error.Param != nil {
		param = *e.Error.Param
	}
	return code, param
}

func TestModelEndpointsRoutedToTheirModel(t *testing.T) {
	srv, _, reg, sims := twoModelSims(t, func(c *config.Config) {
		// Even a rule caching every answer of m2 leaves these alone.
		c.Cache.Rules = []config.CacheRule{{Models: []string{"m2"}, Mode: config.CacheAlways}}
	})
	for _, c := range endpointBodies {
		before := sims["m2"].Stats().Requests
		for i := 0; i < 2; i++ { // never cached nor coalesced: both reach the backend
			resp := post(t, srv.URL+c.path, c.body)
			body := readAll(t, resp)
			if resp.StatusCode != 200 || !strings.Contains(body, c.want) || resp.Header.Get("X-Sluice-Model") != "m2" ||
				resp.Header.Get("X-Cache") != "" || resp.Header.Get("X-Request-Id") == "" {
				t.Fatalf("%s: %d %v %s", c.path, resp.StatusCode, resp.Header, body)
			}
		}
		if d := sims["m2"].Stats().Requests - before; d != 2 {
			t.Fatalf("%s: m2's backend saw %d requests, want 2", c.path, d)
		}
	}
	if n := sims["m1"].Stats().Requests; n != 0 {
		t.Fatalf("m1's backend saw %d requests", n)
	}
	// The metrics are labelled as every request's: model, backend and
	// status, never the path, so the series stay bounded by the config.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.HasPrefix(l.GetValue(), "/") {
					t.Fatalf("%s has a path label %s=%s", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
	if n := metricValue(t, reg, "sluice_requests_total", "model", "m2", "code", "200"); n != float64(2*len(endpointBodies)) {
		t.Fatalf("sluice_requests_total{model=m2,code=200} = %v, want %d", n, 2*len(endpointBodies))
	}
}

func TestModelEndpointErrors(t *testing.T) {
	srv, _, _, sims := twoModelSims(t, nil)
	for _, c := range []struct {
		path, body  string
		status      int
		code, param string
	}{
		{"/v1/rerank", `{"query":"q","documents":["a"]}`, 400, "missing_model", "model"},
		{"/v1/moderations", `{"input":"no model"}`, 400, "missing_model", "model"},
		{"/v1/rerank", `{"model":"m9","query":"q","documents":["a"]}`, 404, "model_not_found", "model"},
		{"/tokenize", `{"model":"nope","prompt":"x"}`, 404, "model_not_found", "model"},
		{"/v1/rerank", `{"model":"m2","query":"q"}`, 400, "missing_required_parameter", "documents"},
		{"/v1/rerank", `{"model":"m2","query":"q","documents":[1]}`, 400, "invalid_type", "documents"},
		{"/score", `{"model":"m2","text_1":"a","Text_2":"b"}`, 400, "ambiguous_parameter", "Text_2"},
		{"/classify", `{"model":"m2","input":"a","messages":[]}`, 400, "invalid_value", "messages"},
		{"/detokenize", `{"model":"m2","tokens":[1.5]}`, 400, "invalid_type", "tokens"},
		{"/pooling", `{"model":"m2","model":"m2","input":"x"}`, 400, "duplicate_parameter", "model"},
		{"/tokenize", `[`, 400, "invalid_json", ""},
		// The backend's own refusal is relayed as it came.
		{"/detokenize", `{"model":"m2","tokens":[99999]}`, 400, "invalid_request", "tokens[0]"},
	} {
		resp := post(t, srv.URL+c.path, c.body)
		body := readAll(t, resp)
		code, param := errParam(t, body)
		if resp.StatusCode != c.status || code != c.code || param != c.param {
			t.Errorf("%s %s: %d %s", c.path, c.body, resp.StatusCode, body)
		}
	}
	resp := do(t, http.MethodGet, srv.URL+"/v1/rerank", "")
	body := readAll(t, resp)
	if _, code, _ := apiErr(t, body); resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" || code != "method_not_allowed" {
		t.Fatalf("GET: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	// Neighbours of the paths stay unknown.
	for _, p := range []string{"/v1/tokenize", "/rerank/", "/v3/rerank", "/v1/classify"} {
		resp := post(t, srv.URL+p, `{"model":"m2"}`)
		if _, code, _ := apiErr(t, readAll(t, resp)); resp.StatusCode != 404 || code != "unknown_url" {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, code)
		}
	}
	if n := sims["m2"].Stats().Requests; n != 1 {
		t.Fatalf("m2's backend saw %d requests, want only the one it refused itself", n)
	}
}

func TestModelEndpointsRateLimited(t *testing.T) {
	srv, _, _, _ := twoModelSims(t, func(c *config.Config) {
		c.RateLimits.PerKey = config.RateRule{Requests: limitPtr(t, "rate=1r/m burst=2 nodelay")}
		c.Auth.Keys = []config.Tenant{{Key: "k1"}}
	})
	// burst=2: three requests, whatever the endpoint, then a refusal.
	for i, path := range []string{"/tokenize", "/v1/rerank", "/detokenize"} {
		c := endpointBodies[0]
		for _, e := range endpointBodies {
			if e.path == path {
				c = e
			}
		}
		resp := post(t, srv.URL+c.path, c.body, "Authorization", "Bearer k1")
		if body := readAll(t, resp); resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Remaining-Requests") != []string{"2", "1", "0"}[i] {
			t.Fatalf("%s within the limit: %d %v %s", path, resp.StatusCode, resp.Header, body)
		}
	}
	resp := post(t, srv.URL+"/classify", `{"model":"m2","input":"x"}`, "Authorization", "Bearer k1")
	body := readAll(t, resp)
	if typ, code, _ := apiErr(t, body); resp.StatusCode != 429 || typ != "rate_limit_error" || code != "rate_limit_exceeded" {
		t.Fatalf("over the limit: %d %s", resp.StatusCode, body)
	}
}

func TestModelEndpointsTokenCharge(t *testing.T) {
	// A rerank is charged its prefill: the query once per document, over
	// 4 bytes a token (here 3*122+3*42 bytes: 123 tokens, where its body
	// alone is ~80). A tokenize is charged as a request, one token.
	srv, _, _, _ := twoModelSims(t, func(c *config.Config) {
		tpm := int64(100)
		c.RateLimits.PerKey = config.RateRule{TokensPerMinute: &tpm}
	})
	doc := strings.Repeat("x", 40)
	big := `{"model":"m2","query":"` + strings.Repeat("q", 120) + `","documents":["` + doc + `","` + doc + `","` + doc + `"]}`
	resp := post(t, srv.URL+"/v1/rerank", big, "Authorization", "Bearer k")
	body := readAll(t, resp)
	if _, code, _ := apiErr(t, body); resp.StatusCode != 400 || code != "exceeds_rate_limit_capacity" {
		t.Fatalf("a rerank of 123 tokens under a 100-token limit: %d %s", resp.StatusCode, body)
	}
	long := `{"model":"m2","prompt":"` + strings.Repeat("word ", 200) + `"}`
	for i := 0; i < 3; i++ {
		resp := post(t, srv.URL+"/tokenize", long, "Authorization", "Bearer k")
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("tokenize %d of a 1000-byte prompt: %d %s", i, resp.StatusCode, body)
		}
	}
}

// An embeddings request generates no tokens: it is charged its prefill
// only (prefillCost), as the pooling endpoints are, not the default
// answer on top; a chat without max_tokens still is. The charge is read
// from x-ratelimit-remaining-tokens, the estimate taken by the limit.
func TestEmbeddingsChargedPrefillOnly(t *testing.T) {
	srv, gw, _, sims := twoModelSims(t, func(c *config.Config) {
		tpm := int64(10000)
		c.RateLimits.PerKey = config.RateRule{TokensPerMinute: &tpm}
		c.Auth.Keys = []config.Tenant{{Key: "k1"}, {Key: "k2"}} // a bucket each
	})
	def := gw.Runtime().Config.Admission.DefaultMaxTokens
	charged := func(key, path, body string) int {
		t.Helper()
		resp := post(t, srv.URL+path, body, "Authorization", "Bearer "+key)
		if b := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		left, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		if err != nil {
			t.Fatalf("%s: x-ratelimit-remaining-tokens %q", path, resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		}
		return 10000 - left
	}
	emb := `{"model":"m2","input":["` + strings.Repeat("a sluice ", 40) + `","a gate"]}`
	if got, want := charged("k1", "/v1/embeddings", emb), (len(emb)+3)/4; got != want {
		t.Fatalf("embeddings of %d bytes charged %d tokens, want its prefill %d (default answer %d)", len(emb), got, want, def)
	}
	if n := sims["m2"].Stats().Requests; n != 1 {
		t.Fatalf("m2's backend saw %d requests, want the embeddings", n)
	}
	chat := `{"model":"m2","messages":[{"role":"user","content":"hi"}]}`
	if got, want := charged("k2", "/v1/chat/completions", chat), (len(chat)+3)/4+def; got != want {
		t.Fatalf("chat of %d bytes charged %d tokens, want %d with the default answer", len(chat), got, want)
	}
}

func TestModelEndpointsAdmission(t *testing.T) {
	be := newGatedBackend(t)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	// A long objective (its delay target a quarter of it): the queued
	// rerank must outwait the tokenize below on a loaded machine.
	cfg.Admission.MaxWait = config.Duration(2 * time.Minute)
	srv, gw := startGateway(t, cfg)
	t.Cleanup(be.open)
	q := gw.Runtime().Pools["m1"].queue

	// Busy: the one slot held by a chat, a rerank waits in the queue.
	ended := make(chan outcome, 2)
	postInBackground(srv.URL+"/v1/chat/completions", ended)
	be.awaitArrival(t, ended)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/rerank", strings.NewReader(`{"model":"m1","query":"q","documents":["a"]}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ended <- outcome{err: err}
			return
		}
		resp.Body.Close()
		ended <- outcome{status: resp.StatusCode}
	}()
	waitFor(t, func() bool { return q.Stats().Queued == 1 })
	// A tokenize does not join the queue behind it, nor wait for the
	// engine's slot: it takes a CPU-side slot and reaches the backend at
	// once (TestTokenizeTakesNoEngineSlot).
	tok := make(chan outcome, 1)
	postAsync(srv.URL+"/tokenize", tokenizeBody, tok)
	be.awaitArrival(t, tok)
	if n := q.Stats().Queued; n != 1 {
		t.Fatalf("%d queued, want the rerank only", n)
	}
	be.open()
	for i := 0; i < 2; i++ {
		if o := <-ended; o.err != nil || o.status != 200 {
			t.Fatalf("held request: %+v", o)
		}
	}
	if o := <-tok; o.err != nil || o.status != 200 {
		t.Fatalf("held tokenize: %+v", o)
	}

	// Free again: a rerank takes a ticket (its queue time is told), a
	// tokenize takes none.
	resp := post(t, srv.URL+"/v1/rerank", `{"model":"m1","query":"q","documents":["a"]}`)
	if readAll(t, resp); resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Queue-Time") != "0" {
		t.Fatalf("rerank: %d %v", resp.StatusCode, resp.Header)
	}
	resp = post(t, srv.URL+"/tokenize", `{"model":"m1","prompt":"q"}`)
	if readAll(t, resp); resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Queue-Time") != "" {
		t.Fatalf("tokenize: %d %v", resp.StatusCode, resp.Header)
	}
}

// audioForm builds a multipart/form-data body of the fields in order
// ("file" gets a file part) and returns its Content-Type.
func audioForm(t *testing.T, fields ...string) (string, string) {
	t.Helper()
	var b strings.Builder
	w := multipart.NewWriter(&b)
	for i := 0; i+1 < len(fields); i += 2 {
		var err error
		if fields[i] == "file" {
			var fw io.Writer
			if fw, err = w.CreateFormFile("file", "a.mp3"); err == nil {
				_, err = io.WriteString(fw, fields[i+1])
			}
		} else {
			err = w.WriteField(fields[i], fields[i+1])
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), b.String()
}

func TestAudioEndpoints(t *testing.T) {
	srv, _, _, sims := twoModelSims(t, func(c *config.Config) {
		c.RateLimits.PerKey = config.RateRule{Requests: limitPtr(t, "rate=1r/m burst=4 nodelay")}
	})
	audio := strings.Repeat("x", 6400)
	for _, path := range []string{"/v1/audio/transcriptions", "/v1/audio/translations"} {
		ct, body := audioForm(t, "file", audio, "model", "m2", "language", "en", "response_format", "verbose_json")
		before := sims["m2"].Stats().PromptTokens
		resp := post(t, srv.URL+path, body, "Content-Type", ct, "Authorization", "Bearer k")
		got := readAll(t, resp)
		if resp.StatusCode != 200 || !strings.Contains(got, `"text":"`) || resp.Header.Get("X-Sluice-Model") != "m2" ||
			resp.Header.Get("X-Sluice-Queue-Time") == "" || resp.Header.Get("X-Ratelimit-Remaining-Requests") == "" {
			t.Fatalf("%s: %d %v %s", path, resp.StatusCode, resp.Header, got)
		}
		if d := sims["m2"].Stats().PromptTokens - before; d != 20 {
			t.Fatalf("%s: m2 prefilled %d tokens, want the file's 6400/320", path, d)
		}
	}
	for _, c := range []struct {
		fields      []string
		ct          string
		status      int
		code, param string
	}{
		{[]string{"file", "x"}, "", 400, "missing_model", "model"},
		{[]string{"file", "x", "model", "m9"}, "", 404, "model_not_found", "model"},
		{[]string{"model", "m2"}, "", 400, "missing_required_parameter", "file"},
		{[]string{"file", "x", "model", "m2", "stream", "true", "response_format", "verbose_json"}, "", 400, "unsupported_value", "response_format"},
		{[]string{"file", "x", "model", "m2", "response_format", "srt"}, "", 400, "unsupported_value", "response_format"},
		{[]string{"file", "x", "model", "m2"}, "application/json", 400, "invalid_content_type", "Content-Type"},
	} {
		ct, body := audioForm(t, c.fields...)
		if c.ct != "" {
			ct = c.ct
		}
		resp := post(t, srv.URL+"/v1/audio/transcriptions", body, "Content-Type", ct)
		got := readAll(t, resp)
		if code, param := errParam(t, got); resp.StatusCode != c.status || code != c.code || param != c.param {
			t.Errorf("%q: %d %s", c.fields, resp.StatusCode, got)
		}
	}
	if n := sims["m1"].Stats().Requests; n != 0 {
		t.Fatalf("m1's backend saw %d requests", n)
	}
}

func TestAudioFormCutShortRefused(t *testing.T) {
	// A form that stops before its closing boundary is not a form: it is
	// refused, not sent on for the backend to make sense of.
	srv, _, _, sims := twoModelSims(t, nil)
	ct, whole := audioForm(t, "model", "m2", "file", "RIFF")
	boundary := ct[strings.Index(ct, "boundary=")+len("boundary="):]
	fileEnd := strings.Index(whole, "--"+boundary+"--")
	for name, body := range map[string]string{
		"a part's head cut":   whole[:fileEnd] + "--" + boundary + "\r\nContent-Disposition: form-da",
		"no closing boundary": whole[:fileEnd],
		"no boundary at all":  "RIFF",
	} {
		resp := post(t, srv.URL+"/v1/audio/transcriptions", body, "Content-Type", ct)
		got := readAll(t, resp)
		if code, _ := errParam(t, got); resp.StatusCode != 400 || code != "invalid_multipart" {
			t.Errorf("%s: %d %s", name, resp.StatusCode, got)
		}
	}
	if n := sims["m2"].Stats().Requests; n != 0 {
		t.Fatalf("m2's backend saw %d requests", n)
	}
}
