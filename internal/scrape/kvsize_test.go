package scrape

import "testing"

// vLLM's cache_config_info (as v0.8+ exports it, an info series of value
// 1.0) says the KV cache's size in its labels: num_gpu_blocks x
// block_size; SGLang's max_total_num_tokens and the simulator's budget are
// plain gauges. Two engines behind one URL add up; a label set without a
// number ("None" before the engine sized its cache, an escape) is no size.
func TestParseKVSize(t *testing.T) {
	info := func(labels string) string {
		return "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{" + labels + "} 1.0\n"
	}
	full := `block_size="16",cache_dtype="auto",calculate_kv_scales="False",cpu_offload_gb="0",enable_prefix_caching="True",engine="0",gpu_memory_utilization="0.9",is_attention_free="False",num_cpu_blocks="None",num_gpu_blocks="1024",num_gpu_blocks_override="None",prefix_caching_hash_algo="builtin",sliding_window="None",swap_space="4",swap_space_bytes="4294967296"`
	cases := []struct {
		name, page string
		want       float64 // -1: none
	}{
		{"vLLM", info(full), 16384},
		{"vLLM, two engines", info(full) + "vllm:cache_config_info{" + full[:len(full)-1] + `",engine="1"} 1.0` + "\n", 32768},
		{"vLLM, spaces and reordered", info(` num_gpu_blocks = "10" , block_size="32" `), 320},
		{"vLLM, blocks not yet known", info(`block_size="16",num_gpu_blocks="None"`), -1},
		{"vLLM, no block size", info(`num_gpu_blocks="1024"`), -1},
		{"vLLM, an escaped value", info(`block_size="1\"6",num_gpu_blocks="1024"`), -1},
		{"vLLM, a key inside another's value", info(`x="num_gpu_blocks=\"9\"",block_size="16",num_gpu_blocks="2"`), 32},
		{"SGLang", sglangSample + "sglang:max_total_num_tokens{model_name=\"m\"} 425162.0\n", 425162},
		{"the simulator", "sluice_sim_kv_tokens{model_name=\"m1\"} 65536\n", 65536},
		{"none", sglangSample, -1},
	}
	n := VLLM()
	n.KVSize = DefaultKVSize()
	for _, c := range cases {
		v, ok := parseExposition([]byte(c.page), &n).kvSize.value()
		if !ok {
			v = -1
		}
		if v != c.want {
			t.Errorf("%s: size %v; want %v", c.name, v, c.want)
		}
	}
}
