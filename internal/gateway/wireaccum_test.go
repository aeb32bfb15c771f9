package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/openai"
)

// wireBackend answers as OpenAI does: a stream request with stream, a
// plain one with answer, counting the requests it saw.
func wireBackend(t *testing.T, stream, answer string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		calls.Add(1)
		if strings.Contains(string(b), `"stream":true`) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, stream)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, answer)
	}))
	t.Cleanup(be.Close)
	return be, &calls
}

func wireFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "openai", "testdata", "wire", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sameJSONValue(t *testing.T, what, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("%s: %v: %s", what, err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\ngot  %s\nwant %s", what, got, want)
	}
}

// TestCachedStreamReadBackAsJSON: OpenAI's stream of two parallel tool
// calls (arguments over several deltas, id and type in the first only,
// service_tier, refusal null, usage with cached and reasoning tokens),
// stored by the cache, answers the same request asked plainly with the
// JSON OpenAI answers it with. Before, the answer lost service_tier,
// content null and refusal null.
func TestCachedStreamReadBackAsJSON(t *testing.T) {
	stream, answer := wireFile(t, "openai_parallel_tools.sse"), wireFile(t, "openai_parallel_tools.json")
	be, calls := wireBackend(t, stream, answer)
	url := startCachingGateway(t, be.URL).URL + "/v1/chat/completions"
	const req = `{"model":"m1","temperature":0,"messages":[{"role":"user","content":"weather and time in Paris"}]%s}`
	resp := post(t, url, strings.Replace(req, "%s", `,"stream":true,"stream_options":{"include_usage":true}`, 1), "Authorization", "Bearer a")
	if got := readAll(t, resp); resp.Header.Get("X-Cache") != "MISS" || got != stream {
		t.Fatalf("the stream: X-Cache %q, relayed as it came: %v", resp.Header.Get("X-Cache"), got == stream)
	}
	resp = post(t, url, strings.Replace(req, "%s", "", 1), "Authorization", "Bearer a")
	got := readAll(t, resp)
	if resp.Header.Get("X-Cache") != "HIT" || calls.Load() != 1 {
		t.Fatalf("plain request after the stream: X-Cache %q, backend calls %d", resp.Header.Get("X-Cache"), calls.Load())
	}
	sameJSONValue(t, "the cached stream as JSON", got, answer)
}

// TestCachedJSONReplayedAsStream: a JSON answer with content and refusal
// logprobs (top_logprobs), reasoning_content, service_tier, vLLM's
// stop_reason and a field no converter names, stored by the cache,
// answers a stream request with chunks that accumulate (the SDKs'
// semantics) back into that JSON; before, the chunks carried no
// logprobs, reasoning, service_tier or unknown field.
func TestCachedJSONReplayedAsStream(t *testing.T) {
	answer := `{"id":"chatcmpl-C1","object":"chat.completion","created":1733400000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!","refusal":null,"reasoning_content":"Greet back.","annotations":[]},"logprobs":{"content":[{"token":"Hello","logprob":-0.31725305,"bytes":[72,101,108,108,111],"top_logprobs":[{"token":"Hello","logprob":-0.31725305,"bytes":[72,101,108,108,111]},{"token":"Hi","logprob":-1.3190403,"bytes":[72,105]}]},{"token":"!","logprob":-0.02380986,"bytes":[33],"top_logprobs":[]}],"refusal":null},"finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":3,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_7f6be3efb0","x_backend_extra":{"queue_ms":4}}`
	be, calls := wireBackend(t, "", answer)
	url := startCachingGateway(t, be.URL).URL + "/v1/chat/completions"
	const req = `{"model":"m1","temperature":0,"logprobs":true,"top_logprobs":2,"messages":[{"role":"user","content":"hello"}]%s}`
	resp := post(t, url, strings.Replace(req, "%s", "", 1), "Authorization", "Bearer a")
	if got := readAll(t, resp); resp.Header.Get("X-Cache") != "MISS" || got != answer {
		t.Fatalf("the answer: X-Cache %q, relayed as it came: %v", resp.Header.Get("X-Cache"), got == answer)
	}
	resp = post(t, url, strings.Replace(req, "%s", `,"stream":true,"stream_options":{"include_usage":true}`, 1), "Authorization", "Bearer a")
	stream := readAll(t, resp)
	if resp.Header.Get("X-Cache") != "HIT" || calls.Load() != 1 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream after the answer: X-Cache %q, backend calls %d, %s", resp.Header.Get("X-Cache"), calls.Load(), resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`"delta":{"role":"assistant","content":"","refusal":null,"annotations":[]}`, `"delta":{"reasoning_content":"Greet back."}`, `"top_logprobs":[{"token":"Hello"`, `"service_tier":"default"`} {
		if !strings.Contains(stream, want) {
			t.Fatalf("replayed stream lacks %s:\n%s", want, stream)
		}
	}
	back, err := openai.AccumulateStream([]byte(stream))
	if err != nil {
		t.Fatal(err)
	}
	sameJSONValue(t, "the replayed stream accumulated", string(back), answer)
}

// TestStreamedJobStoredAsJSON: an async job whose request streams is
// stored as the JSON a plain request gets, the tool calls, service_tier
// and refusal included (AccumulateStream).
func TestStreamedJobStoredAsJSON(t *testing.T) {
	stream, answer := wireFile(t, "openai_parallel_tools.sse"), wireFile(t, "openai_parallel_tools.json")
	be, _ := wireBackend(t, stream, answer)
	_, gw := startGateway(t, testConfig(be.URL))
	res, err := gw.JobExecutor().Execute(context.Background(), &jobs.Job{ID: "j-stream", Path: "/v1/chat/completions", Model: "m1", Class: "batch",
		Body: []byte(`{"model":"m1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"weather and time in Paris"}]}`)})
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("job: %v %d %s", err, res.StatusCode, res.Body)
	}
	sameJSONValue(t, "the job's result", string(res.Body), answer)
}
