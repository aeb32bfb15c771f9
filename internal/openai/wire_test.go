package openai

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The wire cases: streams shaped as OpenAI, vLLM, SGLang, DeepSeek and
// OpenRouter send them, each with the JSON answer the official SDKs
// accumulate it into (openai-python's ChatCompletionStreamState,
// openai-node's ChatCompletionStream), which is also what the backend
// answers a plain request with.

// sse frames chunk payloads as a backend does, [DONE] last.
func sse(chunks ...string) string {
	var b strings.Builder
	for _, c := range chunks {
		b.WriteString("data: " + c + "\n\n")
	}
	b.WriteString("data: [DONE]\n\n")
	return b.String()
}

// chunkOf wraps choices (and what follows them) in head.
func chunkOf(head, choices string) string { return head + `"choices":[` + choices + `]` + "}" }

const (
	oaHead     = `{"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1733400000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_7f6be3efb0",`
	vllmHead   = `{"id":"chatcmpl-b1f0","object":"chat.completion.chunk","created":1733400001,"model":"Qwen/QwQ-32B",`
	dsHead     = `{"id":"8f3a","object":"chat.completion.chunk","created":1733400002,"model":"deepseek-reasoner","system_fingerprint":"fp_a1b2_prod0425fp8",`
	orHead     = `{"id":"gen-17334","provider":"Anthropic","model":"anthropic/claude-3.7-sonnet:thinking","object":"chat.completion.chunk","created":1733400003,`
	legacyHead = `{"id":"cmpl-A1","object":"text_completion","created":1733400004,`
)

type wireCase struct {
	name   string
	stream string
	json   string // the plain answer
}

func wireCases(t testing.TB) []wireCase {
	file := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", "wire", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	lp := func(tok string, p string, bytes string) string {
		return `{"token":"` + tok + `","logprob":` + p + `,"bytes":[` + bytes + `],"top_logprobs":[{"token":"` + tok + `","logprob":` + p + `,"bytes":[` + bytes + `]},{"token":"Hi","logprob":-1.3190403,"bytes":[72,105]}]}`
	}
	hello, bang := lp("Hello", "-0.31725305", "72,101,108,108,111"), lp("!", "-0.02380986", "33")
	return []wireCase{{
		name:   "openai parallel tool calls, arguments in many deltas, usage details",
		stream: file("openai_parallel_tools.sse"),
		json:   file("openai_parallel_tools.json"),
	}, {
		name: "openai legacy function_call",
		stream: sse(
			chunkOf(oaHead, `{"index":0,"delta":{"role":"assistant","content":null,"function_call":{"name":"get_weather","arguments":""},"refusal":null},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"function_call":{"arguments":"{\"location\""}},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"function_call":{"arguments":":\"Paris\"}"}},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{},"logprobs":null,"finish_reason":"function_call"}`)),
		json: `{"id":"chatcmpl-B9","object":"chat.completion","created":1733400000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_7f6be3efb0","choices":[{"index":0,"message":{"role":"assistant","content":null,"function_call":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"},"refusal":null},"logprobs":null,"finish_reason":"function_call"}]}`,
	}, {
		name: "openai content logprobs with top_logprobs",
		stream: sse(
			chunkOf(oaHead, `{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":{"content":[],"refusal":null},"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"content":"Hello"},"logprobs":{"content":[`+hello+`],"refusal":null},"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"content":"!"},"logprobs":{"content":[`+bang+`],"refusal":null},"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}`)),
		json: `{"id":"chatcmpl-B9","object":"chat.completion","created":1733400000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_7f6be3efb0","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!","refusal":null},"logprobs":{"content":[` + hello + `,` + bang + `],"refusal":null},"finish_reason":"stop"}]}`,
	}, {
		name: "openai refusal with refusal logprobs",
		stream: sse(
			chunkOf(oaHead, `{"index":0,"delta":{"role":"assistant","content":null,"refusal":""},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"refusal":"I'm sorry"},"logprobs":{"content":null,"refusal":[{"token":"I'm","logprob":-0.0012,"bytes":[73,39,109],"top_logprobs":[]}]},"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"refusal":", I can't help with that."},"logprobs":{"content":null,"refusal":[{"token":" sorry","logprob":-0.0001,"bytes":[32,115,111,114,114,121],"top_logprobs":[]}]},"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}`)),
		json: `{"id":"chatcmpl-B9","object":"chat.completion","created":1733400000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_7f6be3efb0","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I'm sorry, I can't help with that."},"logprobs":{"content":null,"refusal":[{"token":"I'm","logprob":-0.0012,"bytes":[73,39,109],"top_logprobs":[]},{"token":" sorry","logprob":-0.0001,"bytes":[32,115,111,114,114,121],"top_logprobs":[]}]},"finish_reason":"stop"}]}`,
	}, {
		name: "openai obfuscation padding left out of the answer",
		stream: sse(
			oaHead+`"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Xq3"}`,
			oaHead+`"choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"aY7pQ"}`,
			oaHead+`"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null,"obfuscation":"k"}`),
		json: `{"id":"chatcmpl-B9","object":"chat.completion","created":1733400000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_7f6be3efb0","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","refusal":null},"logprobs":null,"finish_reason":"stop"}]}`,
	}, {
		name: "n=2 interleaved, choice 1 first, a finish_reason each",
		stream: sse(
			chunkOf(oaHead, `{"index":1,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":1,"delta":{"content":"Bon"},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"content":"lo"},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}`),
			chunkOf(oaHead, `{"index":1,"delta":{"content":"jour"},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":1,"delta":{},"logprobs":null,"finish_reason":"length"}`)),
		json: `{"id":"chatcmpl-B9","object":"chat.completion","created":1733400000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_7f6be3efb0","choices":[{"index":0,"message":{"role":"assistant","content":"Hello","refusal":null},"logprobs":null,"finish_reason":"stop"},{"index":1,"message":{"role":"assistant","content":"Bonjour","refusal":null},"logprobs":null,"finish_reason":"length"}]}`,
	}, {
		name: "openai audio: transcript and data in pieces, id and expires_at once",
		stream: sse(
			chunkOf(oaHead, `{"index":0,"delta":{"role":"assistant","content":null,"refusal":null,"audio":{"id":"audio_6752","transcript":"Hi"}},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"audio":{"transcript":" there"}},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"audio":{"data":"UklGRiQA"}},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"audio":{"data":"AABXQVZF"}},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"audio":{"expires_at":1733403600}},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}`)),
		json: `{"id":"chatcmpl-B9","object":"chat.completion","created":1733400000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_7f6be3efb0","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"audio":{"id":"audio_6752","transcript":"Hi there","data":"UklGRiQAAABXQVZF","expires_at":1733403600}},"logprobs":null,"finish_reason":"stop"}]}`,
	}, {
		name: "vLLM reasoning_content and reasoning, stop_reason, token_ids, <think> unescaped",
		stream: sse(
			chunkOf(vllmHead, `{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}`),
			chunkOf(vllmHead, `{"index":0,"delta":{"reasoning_content":"Six","reasoning":"Six"},"logprobs":null,"finish_reason":null,"token_ids":[21]}`),
			chunkOf(vllmHead, `{"index":0,"delta":{"reasoning_content":" times seven.","reasoning":" times seven."},"logprobs":null,"finish_reason":null,"token_ids":[22,23]}`),
			chunkOf(vllmHead, `{"index":0,"delta":{"content":"<b>42</b> & done"},"logprobs":null,"finish_reason":null,"token_ids":[24]}`),
			chunkOf(vllmHead, `{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":151645,"token_ids":[]}`),
			vllmHead+`"choices":[],"usage":{"prompt_tokens":12,"total_tokens":20,"completion_tokens":8,"prompt_tokens_details":{"cached_tokens":0}}}`),
		json: `{"id":"chatcmpl-b1f0","object":"chat.completion","created":1733400001,"model":"Qwen/QwQ-32B","choices":[{"index":0,"message":{"role":"assistant","content":"<b>42</b> & done","reasoning_content":"Six times seven.","reasoning":"Six times seven."},"logprobs":null,"finish_reason":"stop","token_ids":[21,22,23,24],"stop_reason":151645}],"usage":{"prompt_tokens":12,"total_tokens":20,"completion_tokens":8,"prompt_tokens_details":{"cached_tokens":0}}}`,
	}, {
		name: "DeepSeek reasoner: null content while reasoning, reasoning_tokens, cache hit tokens",
		stream: sse(
			chunkOf(dsHead, `{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":""},"logprobs":null,"finish_reason":null}`),
			chunkOf(dsHead, `{"index":0,"delta":{"content":null,"reasoning_content":"Hmm"},"logprobs":null,"finish_reason":null}`),
			chunkOf(dsHead, `{"index":0,"delta":{"content":"Yes","reasoning_content":null},"logprobs":null,"finish_reason":null}`),
			dsHead+`"choices":[{"index":0,"delta":{"content":"","reasoning_content":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":30,"total_tokens":40,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":29},"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":10}}`),
		json: `{"id":"8f3a","object":"chat.completion","created":1733400002,"model":"deepseek-reasoner","system_fingerprint":"fp_a1b2_prod0425fp8","choices":[{"index":0,"message":{"role":"assistant","content":"Yes","reasoning_content":"Hmm"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":30,"total_tokens":40,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":29},"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":10}}`,
	}, {
		name: "OpenRouter reasoning and reasoning_details by index, provider kept",
		stream: sse(
			chunkOf(orHead, `{"index":0,"delta":{"role":"assistant","content":"","reasoning":"Let","reasoning_details":[{"type":"reasoning.text","text":"Let","format":"anthropic-claude-v1","index":0}]},"finish_reason":null,"native_finish_reason":null,"logprobs":null}`),
			chunkOf(orHead, `{"index":0,"delta":{"role":"assistant","content":"","reasoning":" me","reasoning_details":[{"type":"reasoning.text","text":" me","format":"anthropic-claude-v1","index":0}]},"finish_reason":null,"native_finish_reason":null,"logprobs":null}`),
			chunkOf(orHead, `{"index":0,"delta":{"role":"assistant","content":"Ok","reasoning":null},"finish_reason":"stop","native_finish_reason":"end_turn","logprobs":null}`)),
		json: `{"id":"gen-17334","provider":"Anthropic","model":"anthropic/claude-3.7-sonnet:thinking","object":"chat.completion","created":1733400003,"choices":[{"index":0,"message":{"role":"assistant","content":"Ok","reasoning":"Let me","reasoning_details":[{"type":"reasoning.text","text":"Let me","format":"anthropic-claude-v1","index":0}]},"logprobs":null,"finish_reason":"stop","native_finish_reason":"end_turn"}]}`,
	}, {
		name: "newer fields: a top-level member, a delta's annotations, an unknown delta string",
		stream: sse(
			chunkOf(oaHead+`"x_new_top":{"a":1},`, `{"index":0,"delta":{"role":"assistant","content":"","refusal":null,"x_delta":"a"},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"content":"See","x_delta":"b"},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{"annotations":[{"type":"url_citation","url_citation":{"start_index":0,"end_index":3,"url":"https://e.x/?a=1&b=2","title":"E"}}]},"logprobs":null,"finish_reason":null}`),
			chunkOf(oaHead, `{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}`)),
		json: `{"id":"chatcmpl-B9","object":"chat.completion","created":1733400000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_7f6be3efb0","x_new_top":{"a":1},"choices":[{"index":0,"message":{"role":"assistant","content":"See","refusal":null,"x_delta":"ab","annotations":[{"type":"url_citation","url_citation":{"start_index":0,"end_index":3,"url":"https://e.x/?a=1&b=2","title":"E"}}]},"logprobs":null,"finish_reason":"stop"}]}`,
	}, {
		name: "legacy completions: text deltas, logprobs lists, usage",
		stream: sse(
			legacyHead+`"choices":[{"text":"Hello","index":0,"logprobs":{"tokens":["Hello"],"token_logprobs":[-0.5],"top_logprobs":[{"Hello":-0.5,"Hi":-1.2}],"text_offset":[10]},"finish_reason":null}],"model":"gpt-3.5-turbo-instruct","system_fingerprint":null}`,
			legacyHead+`"choices":[{"text":" world","index":0,"logprobs":{"tokens":[" world"],"token_logprobs":[-0.25],"top_logprobs":[{" world":-0.25," there":-2.1}],"text_offset":[15]},"finish_reason":"length"}],"model":"gpt-3.5-turbo-instruct","system_fingerprint":null}`,
			legacyHead+`"choices":[],"model":"gpt-3.5-turbo-instruct","system_fingerprint":null,"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}`),
		json: `{"id":"cmpl-A1","object":"text_completion","created":1733400004,"model":"gpt-3.5-turbo-instruct","choices":[{"index":0,"text":"Hello world","logprobs":{"tokens":["Hello"," world"],"token_logprobs":[-0.5,-0.25],"top_logprobs":[{"Hello":-0.5,"Hi":-1.2},{" world":-0.25," there":-2.1}],"text_offset":[10,15]},"finish_reason":"length"}],"system_fingerprint":null,"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}`,
	}}
}

// TestStreamToJSONWireShapes: each stream accumulates into the answer the
// SDKs make of it; AccumulateStream (async jobs, Batch lines) the same.
func TestStreamToJSONWireShapes(t *testing.T) {
	for _, c := range wireCases(t) {
		t.Run(c.name, func(t *testing.T) {
			got, err := AccumulateStream([]byte(c.stream))
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, got, []byte(c.json))
			// Numbers and strings as the backend spelt them, no HTML escapes.
			if bytes.Contains(got, []byte(`\u003c`)) || bytes.Contains(got, []byte(`\u0026`)) {
				t.Errorf("HTML-escaped: %s", got)
			}
		})
	}
}

// TestJSONToSSEWireShapes: each answer replayed as a stream accumulates
// back into itself (by the SDKs' semantics, which StreamToJSON follows),
// and the chunks are OpenAI's: an object of chunk type, an id, created
// and model in each, a role in the first delta, tool calls indexed.
func TestJSONToSSEWireShapes(t *testing.T) {
	for _, c := range wireCases(t) {
		t.Run(c.name, func(t *testing.T) {
			for _, usage := range []bool{true, false} {
				stream, err := JSONToSSE([]byte(c.json), usage)
				if err != nil {
					t.Fatal(err)
				}
				back, err := AccumulateStream(stream)
				if err != nil {
					t.Fatal(err)
				}
				want := c.json
				if !usage {
					want = withoutUsage(t, want)
				}
				sameJSON(t, back, []byte(want))
				for _, ev := range ParseSSE(stream) {
					var ch struct {
						ID      *string `json:"id"`
						Object  string  `json:"object"`
						Created *int64  `json:"created"`
						Model   *string `json:"model"`
						Choices []struct {
							Delta *struct {
								ToolCalls []struct {
									Index *int `json:"index"`
								} `json:"tool_calls"`
							} `json:"delta"`
						} `json:"choices"`
					}
					if err := json.Unmarshal(ev, &ch); err != nil {
						t.Fatal(err)
					}
					if ch.ID == nil || ch.Created == nil || ch.Model == nil || !strings.HasSuffix(ch.Object, "chunk") && ch.Object != "text_completion" {
						t.Fatalf("chunk without its head: %s", ev)
					}
					for _, choice := range ch.Choices {
						if choice.Delta == nil {
							continue
						}
						for _, tc := range choice.Delta.ToolCalls {
							if tc.Index == nil {
								t.Fatalf("tool call delta without index: %s", ev)
							}
						}
					}
				}
			}
		})
	}
}

func withoutUsage(t *testing.T, s string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "usage")
	b, _ := json.Marshal(m)
	return string(b)
}

func sameJSON(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%v: %s", err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want: %v: %s", err, want)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// BenchmarkStreamToJSON: a 1,000-token answer as vLLM streams it, one
// token an event, assembled as a cache hit or a job's result is.
func BenchmarkStreamToJSON(b *testing.B) {
	chunks := []string{chunkOf(vllmHead, `{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}`)}
	for range 1000 {
		chunks = append(chunks, chunkOf(vllmHead, `{"index":0,"delta":{"content":" word"},"logprobs":null,"finish_reason":null}`))
	}
	events := ParseSSE([]byte(sse(chunks...)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := StreamToJSON(events); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSparseToolCallIndex: a tool call's index is a key, not a length. A
// backend that numbers its one call 1048576 (a bug, or a hostile server)
// made the old accumulator build 1,048,577 calls (~60 MB, and a larger
// index as much memory as it names); it is one call.
func TestSparseToolCallIndex(t *testing.T) {
	stream := sse(
		chunkOf(oaHead, `{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":1048576,"id":"call_x","type":"function","function":{"name":"f","arguments":"{}"}}]},"logprobs":null,"finish_reason":"tool_calls"}`))
	got, err := AccumulateStream([]byte(stream))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > 1000 {
		t.Fatalf("one call accumulated into %d bytes", len(got))
	}
	sameJSON(t, got, []byte(`{"id":"chatcmpl-B9","object":"chat.completion","created":1733400000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_7f6be3efb0","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_x","type":"function","function":{"name":"f","arguments":"{}"}}]},"logprobs":null,"finish_reason":"tool_calls"}]}`))
}
