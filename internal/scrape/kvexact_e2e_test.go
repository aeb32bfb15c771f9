package scrape_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/scrape"
)

// vllmLongPrompts is a vLLM v1 exposition of an engine running two long
// prompts: 79% of a cache of 1,024 blocks of 16 tokens (16,384) in use.
const vllmLongPrompts = `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.79
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",calculate_kv_scales="False",cpu_offload_gb="0",enable_prefix_caching="True",engine="0",gpu_memory_utilization="0.9",is_attention_free="False",num_cpu_blocks="None",num_gpu_blocks="1024",num_gpu_blocks_override="None",prefix_caching_hash_algo="builtin",sliding_window="None",swap_space="4",swap_space_bytes="4294967296"} 1.0
`

// sglangLongPrompts is SGLang's: a bound of 16, two running, 79% of its
// 16,384 tokens used.
const sglangLongPrompts = `# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.79
# HELP sglang:max_total_num_tokens Maximum total number of tokens in the KV cache pool.
# TYPE sglang:max_total_num_tokens gauge
sglang:max_total_num_tokens{model_name="meta-llama/Llama-3.1-8B-Instruct"} 16384.0
# HELP sglang:max_running_requests Maximum running requests
# TYPE sglang:max_running_requests gauge
sglang:max_running_requests{model_name="meta-llama/Llama-3.1-8B-Instruct"} 16.0
`

// An engine running two long prompts in 79% of a 16,384-token cache, as
// vLLM and SGLang export it (a real exposition from an httptest server):
// the free tokens, 16,384 x (1 - 0.79 - 0.05) = 2,621, hold ten newcomers
// of 250 tokens (vLLM: no bound, the KV room alone; SGLang: its bound's
// 14 free slots caps it) and none of 3,000. Counted like the running ones
// (2 x 0.16 / 0.79: none), the code before kvexact gave a short newcomer
// no room on vLLM.
func TestExporterKVRoomCountsTheNewcomer(t *testing.T) {
	cases := []struct {
		name        string
		page        string
		names       scrape.Names
		short, long int
	}{
		{"vLLM", vllmLongPrompts, scrape.VLLM(), 10, 0},
		{"SGLang", sglangLongPrompts, scrape.SGLang(), 10, 0},
	}
	for _, c := range cases {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			w.Write([]byte(c.page))
		}))
		client := simClient(t)
		b := newBackend(t, srv.URL)
		now := time.Now()
		scrapeSim(t, client, b, now, c.names)
		srv.Close()
		if l, _ := b.Load(); l.KVCacheTokens != 16384 {
			t.Fatalf("%s: cache size %v; want 16384", c.name, l.KVCacheTokens)
		}
		if room, ok := b.ReportedRoomFor(now, 250); !ok || room != c.short {
			t.Errorf("%s: room for 250-token newcomers %d (ok %v); want %d", c.name, room, ok, c.short)
		}
		if room, ok := b.ReportedRoomFor(now, 3000); !ok || room != c.long {
			t.Errorf("%s: room for 3,000-token newcomers %d (ok %v); want %d", c.name, room, ok, c.long)
		}
	}
}
