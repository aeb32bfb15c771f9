package scrape

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"
)

// vllmSample is trimmed from a real vLLM 0.6 /metrics page, with a second
// model_name series added (LoRA adapters and multi-model servers report one
// series each) and histogram families whose names extend the wanted ones.
const vllmSample = `# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="meta-llama/Llama-3.1-8B-Instruct"} 5.0
vllm:num_requests_running{model_name="sql-lora"} 2.0
# HELP vllm:num_requests_swapped Number of requests swapped to CPU.
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
vllm:num_requests_waiting{model_name="sql-lora"} 1.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.4375
# HELP vllm:num_requests_running_seconds A histogram that must not be read.
# TYPE vllm:num_requests_running_seconds histogram
vllm:num_requests_running_seconds_bucket{le="0.1",model_name="m"} 100.0
vllm:num_requests_running_seconds_sum{model_name="m"} 1000.0
vllm:num_requests_running_seconds_count{model_name="m"} 100.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.9
`

// sglangSample is trimmed from a real SGLang /metrics page.
const sglangSample = `# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
# HELP sglang:num_used_tokens The number of used tokens.
# TYPE sglang:num_used_tokens gauge
sglang:num_used_tokens{model_name="meta-llama/Llama-3.1-8B-Instruct"} 40960.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.28
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.0
`

// got is a parse result in comparable form; -1 means "not found".
type got struct{ running, waiting, kv float64 }

func parseGot(s string, n Names) got {
	r := parseExposition([]byte(s), &n)
	val := func(f family) float64 {
		if v, ok := f.value(); ok {
			return v
		}
		return -1
	}
	return got{val(r.running), val(r.waiting), val(r.kv)}
}

func TestParseSamples(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		names Names
		want  got
	}{
		{"vllm: series summed, gpu_cache preferred", vllmSample, VLLM(), got{7, 4, 0.4375}},
		{"sglang", sglangSample, SGLang(), got{12, 7, 0.28}},
		{"vllm names on an sglang page", sglangSample, VLLM(), got{-1, -1, -1}},
		{"vllm without the old kv name", strings.ReplaceAll(vllmSample, "vllm:gpu_cache_usage_perc", "vllm:old_name"), VLLM(), got{7, 4, 0.9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if g := parseGot(tt.body, tt.names); g != tt.want {
				t.Errorf("parse = %+v, want %+v", g, tt.want)
			}
		})
	}
}

func TestParseLines(t *testing.T) {
	const r = "vllm:num_requests_running"
	tests := []struct {
		name string
		body string
		want float64 // running; -1 = not found
	}{
		{"no labels", r + " 3", 3},
		{"integer and exponent", r + "{a=\"b\"} 3\n" + r + "{a=\"c\"} 2e1", 23},
		{"timestamp", r + `{a="b"} 4 1712345678901`, 4},
		{"negative timestamp", r + " 4 -17", 4},
		{"CRLF", r + " 1\r\n" + r + "{x=\"y\"} 2\r\n", 3},
		{"tabs and spaces", "  \t" + r + "\t{a=\"b\"}\t 5 \t", 5},
		{"blank before brace", r + ` {a="b"} 6`, 6},
		{"trailing comma in labels", r + `{a="b",} 7`, 7},
		{"brace and quote inside a label value", r + `{a="}\" x 9"} 8`, 8},
		{"escaped backslash before the closing quote", r + `{a="x\\"} 9`, 9},
		{"no trailing newline", "# c\n" + r + " 2", 2},
		{"empty", "", -1},
		{"comments only", "# HELP " + r + " 3\n# TYPE " + r + " gauge\n#" + r + " 9", -1},
		{"longer name", r + "_total 3\n" + r + "x 3\n" + r + "_bucket{le=\"1\"} 3", -1},
		{"shorter name", "vllm:num_requests_runnin 3", -1},
		{"prefix on the name", "xvllm:num_requests_running 3", -1},
		{"NaN", r + " NaN\n" + r + "{a=\"b\"} 2", 2},
		{"Inf", r + " +Inf\n" + r + " Inf\n" + r + " -Inf\n" + r + " 1", 1},
		{"negative", r + " -3\n" + r + " 1", 1},
		{"overflowing sum", r + " 1e308\n" + r + " 1e308", -1},
		{"no value", r + "\n" + r + "{a=\"b\"}\n" + r + " ", -1},
		{"garbage value", r + " three\n" + r + " 0x1p4\n" + r + " 1_0\n" + r + " 0x10", -1},
		{"garbage timestamp", r + " 3 soon\n" + r + " 3 1.5", -1},
		{"extra field", r + " 3 12 13", -1},
		{"unclosed labels", r + `{a="b" 3`, -1},
		{"unclosed quote", r + `{a="b} 3`, -1},
		{"value glued to brace", r + `{a="b"}3`, -1},
		{"binary garbage around a good line", "\x00\xff{}\"\n" + r + " 2\n\x7f\x80 1\n}}}", 2},
		{"a bad line does not end the scan", r + "{ 9\n" + r + " 4", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if g := parseGot(tt.body, VLLM()); g.running != tt.want {
				t.Errorf("running = %v, want %v", g.running, tt.want)
			}
		})
	}
}

func TestParseKV(t *testing.T) {
	tests := []struct {
		name string
		body string
		want float64
	}{
		{"largest series, not the sum", "vllm:gpu_cache_usage_perc{engine=\"0\"} 0.6\nvllm:gpu_cache_usage_perc{engine=\"1\"} 0.7", 0.7},
		{"preferred name wins whatever the order",
			"vllm:kv_cache_usage_perc 0.9\nvllm:gpu_cache_usage_perc 0.2\nvllm:kv_cache_usage_perc 0.95", 0.2},
		{"second name when the first is absent", "vllm:kv_cache_usage_perc 0.5", 0.5},
		{"missing", "vllm:num_requests_running 1", -1},
		{"NaN skipped", "vllm:gpu_cache_usage_perc NaN", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if g := parseGot(tt.body, VLLM()); g.kv != tt.want {
				t.Errorf("kv = %v, want %v", g.kv, tt.want)
			}
		})
	}
}

// TestParseDoesNotAllocate: the scraper parses every backend every second.
func TestParseDoesNotAllocate(t *testing.T) {
	body := []byte(vllmSample + strings.Repeat("other_metric{a=\"b\"} 1\n", 100))
	n := VLLM()
	allocs := testing.AllocsPerRun(100, func() { parseExposition(body, &n) })
	if allocs != 0 {
		t.Errorf("parseExposition allocates %v times per call, want 0", allocs)
	}
}

// FuzzParseExposition: never panics, every result is a finite, non-negative
// number (KV no larger than what was sent), and the result does not depend
// on line order.
func FuzzParseExposition(f *testing.F) {
	for _, s := range []string{
		vllmSample, sglangSample, llamaCppSample, llamaCppOldSample, "",
		"vllm:num_requests_running{a=\"}\\\"\"} 3 17\r\n",
		"vllm:num_requests_waiting NaN\nvllm:num_requests_waiting -Inf\n",
		"vllm:gpu_cache_usage_perc{ 1\n{\"vllm:num_requests_running\"} 1",
		"vllm:num_requests_running 1e308\nvllm:num_requests_running 1e308",
	} {
		f.Add([]byte(s))
	}
	n := withLlamaCpp(VLLM())                                // the default names
	n.Running = append(n.Running, "sglang:num_running_reqs") // exercise ranks
	f.Fuzz(func(t *testing.T, data []byte) {
		r := parseExposition(data, &n)
		for _, fam := range []family{r.running, r.waiting, r.kv} {
			v, ok := fam.value()
			if ok && (math.IsNaN(v) || math.IsInf(v, 0) || v < 0) {
				t.Fatalf("result %v from %q", v, data)
			}
			if !ok && v != 0 {
				t.Fatalf("missing value reported as %v", v)
			}
		}
		lines := bytes.Split(data, []byte("\n"))
		slices.Reverse(lines)
		rev := parseExposition(bytes.Join(lines, []byte("\n")), &n)
		for i, pair := range [][2]family{{r.running, rev.running}, {r.waiting, rev.waiting}, {r.kv, rev.kv}} {
			a, okA := pair[0].value()
			b, okB := pair[1].value()
			if a > 1e300 || b > 1e300 {
				continue // rounding decides whether a near-overflowing sum overflows
			}
			if okA != okB || math.Abs(a-b) > 1e-9*max(1, math.Abs(a)) {
				t.Fatalf("family %d: %v,%v forward, %v,%v with lines reversed, from %q", i, a, okA, b, okB, data)
			}
		}
	})
}

// SGLang's batch bound (sglang:max_running_requests, documented by some
// versions, with a name label) is read by the default names, summed over
// label sets as the running count is; an exposition without it reads none.
func TestParseBatchBound(t *testing.T) {
	n := SGLang()
	n.BatchBound = DefaultBatchBound()
	page := sglangSample + `# HELP sglang:max_running_requests Maximum running requests
# TYPE sglang:max_running_requests gauge
sglang:max_running_requests{name="google/gemma-2-9b-it"} 48.0
sglang:max_running_requests_under_SLO{name="google/gemma-2-9b-it"} 7.0
`
	r := parseExposition([]byte(page), &n)
	if v, ok := r.bound.value(); !ok || v != 48 {
		t.Fatalf("bound %v (ok %v); want 48", v, ok)
	}
	two := page + "sglang:max_running_requests{name=\"google/gemma-2-9b-it\",dp_rank=\"1\"} 48.0\n"
	if v, _ := parseExposition([]byte(two), &n).bound.value(); v != 96 {
		t.Fatalf("bound of two engines %v; want 96", v)
	}
	if _, ok := parseExposition([]byte(sglangSample), &n).bound.value(); ok {
		t.Fatal("a bound read from a page without one")
	}
}
