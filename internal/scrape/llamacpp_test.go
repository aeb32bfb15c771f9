package scrape

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// llamaCppSample is a llama.cpp server's /metrics body (llama-server
// --metrics) in the exact format its source writes: for each series a
// "# HELP llamacpp:<name> <help>" line, a "# TYPE llamacpp:<name> <type>"
// line and "llamacpp:<name> <value>", no labels, counters then gauges, then
// the one labelled series (accepted draft tokens per position) when
// speculative decoding ran (ggml-org/llama.cpp tools/server,
// server_task_result_metrics::to_metrics, served as "text/plain;
// version=0.0.4" by server-context.cpp's get_metrics). Names and help texts
// are those of tools/server/README.md, "GET /metrics" (commit 00dc8057).
// Values go through a C++ stream's default formatting: six significant
// digits, so 1,234,567 prompt tokens read 1.23457e+06.
const llamaCppSample = `# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 1.23457e+06
# HELP llamacpp:prompt_seconds_total Prompt process time in seconds.
# TYPE llamacpp:prompt_seconds_total counter
llamacpp:prompt_seconds_total 235.743
# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 7801
# HELP llamacpp:tokens_predicted_seconds_total Predict process time in seconds.
# TYPE llamacpp:tokens_predicted_seconds_total counter
llamacpp:tokens_predicted_seconds_total 312.5
# HELP llamacpp:n_decode_total Total Number of llama_decode() calls.
# TYPE llamacpp:n_decode_total counter
llamacpp:n_decode_total 2105
# HELP llamacpp:n_tokens_max High watermark of the context size observed.
# TYPE llamacpp:n_tokens_max counter
llamacpp:n_tokens_max 4096
# HELP llamacpp:spec_decode_num_draft_tokens_total Total draft tokens generated (0 when spec-decode is off).
# TYPE llamacpp:spec_decode_num_draft_tokens_total counter
llamacpp:spec_decode_num_draft_tokens_total 64
# HELP llamacpp:spec_decode_num_accepted_tokens_total Total draft tokens accepted by the target model (0 when spec-decode is off).
# TYPE llamacpp:spec_decode_num_accepted_tokens_total counter
llamacpp:spec_decode_num_accepted_tokens_total 40
# HELP llamacpp:spec_decode_num_drafts_total Total speculative decoding verification steps (0 when spec-decode is off).
# TYPE llamacpp:spec_decode_num_drafts_total counter
llamacpp:spec_decode_num_drafts_total 16
# HELP llamacpp:prompt_tokens_seconds Average prompt throughput in tokens/s.
# TYPE llamacpp:prompt_tokens_seconds gauge
llamacpp:prompt_tokens_seconds 5236.9
# HELP llamacpp:predicted_tokens_seconds Average generation throughput in tokens/s.
# TYPE llamacpp:predicted_tokens_seconds gauge
llamacpp:predicted_tokens_seconds 24.9632
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 4
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 3
# HELP llamacpp:n_busy_slots_per_decode Average number of busy slots per llama_decode() call.
# TYPE llamacpp:n_busy_slots_per_decode gauge
llamacpp:n_busy_slots_per_decode 3.70594
# HELP llamacpp:spec_decode_num_accepted_tokens_per_pos_total Accepted tokens per draft position
# TYPE llamacpp:spec_decode_num_accepted_tokens_per_pos_total counter
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="0"} 14
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="1"} 11
`

// llamaCppOldSample is the same from an older server
// (examples/server/server.cpp of 2024), which also reported its KV cache's
// usage, "1 means 100 percent usage".
const llamaCppOldSample = `# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 33065
# HELP llamacpp:prompt_seconds_total Prompt process time
# TYPE llamacpp:prompt_seconds_total counter
llamacpp:prompt_seconds_total 235.743
# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 7801
# HELP llamacpp:tokens_predicted_seconds_total Predict process time
# TYPE llamacpp:tokens_predicted_seconds_total counter
llamacpp:tokens_predicted_seconds_total 312.5
# HELP llamacpp:prompt_tokens_seconds Average prompt throughput in tokens/s.
# TYPE llamacpp:prompt_tokens_seconds gauge
llamacpp:prompt_tokens_seconds 140.26
# HELP llamacpp:predicted_tokens_seconds Average generation throughput in tokens/s.
# TYPE llamacpp:predicted_tokens_seconds gauge
llamacpp:predicted_tokens_seconds 24.9632
# HELP llamacpp:kv_cache_usage_ratio KV-cache usage. 1 means 100 percent usage.
# TYPE llamacpp:kv_cache_usage_ratio gauge
llamacpp:kv_cache_usage_ratio 0.25
# HELP llamacpp:kv_cache_tokens KV-cache tokens.
# TYPE llamacpp:kv_cache_tokens gauge
llamacpp:kv_cache_tokens 2048
# HELP llamacpp:requests_processing Number of request processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
# HELP llamacpp:requests_deferred Number of request deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 0
`

// A llama.cpp server's /metrics is read with the default names (no
// preset set: a pool may mix it with vLLM) and with the llamacpp preset:
// requests_processing as the running batch, requests_deferred as the
// queue, kv_cache_usage_ratio where an older server reports it; nothing
// else in the body (n_busy_slots_per_decode is an average, not a count)
// is taken for them. On the old code the default names found no queue
// metric in it and the scrape failed.
func TestScrapeReadsLlamaCpp(t *testing.T) {
	for _, tt := range []struct {
		name   string
		preset string // "": Config's default names
		body   string
		want   endpoint.Load
	}{
		{"default names", "", llamaCppSample, endpoint.Load{Running: 4, Waiting: 3}},
		{"llamacpp preset", "llamacpp", llamaCppSample, endpoint.Load{Running: 4, Waiting: 3}},
		{"sglang preset", "sglang", llamaCppSample, endpoint.Load{Running: 4, Waiting: 3}},
		{"older server, default names", "", llamaCppOldSample, endpoint.Load{Running: 2, KVCacheUsage: 0.25}},
		{"older server, llamacpp preset", "llamacpp", llamaCppOldSample, endpoint.Load{Running: 2, KVCacheUsage: 0.25}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var names Names
			if tt.preset != "" {
				var err error
				if names, err = Preset(tt.preset); err != nil {
					t.Fatal(err)
				}
			}
			srv := newFakeServer(t, tt.body)
			b := newBackend(t, srv.URL, "")
			s := NewScraper(Config{Names: names, Now: func() time.Time { return t0 }}, newClient(t), nil)
			if err := s.ScrapeOnce(t.Context(), []*endpoint.Backend{b}); err != nil {
				t.Fatal(err)
			}
			tt.want.At, tt.want.Expires = t0, t0.Add(3*time.Second)
			if got, ok := b.Load(); !ok || got != tt.want {
				t.Errorf("Load() = %+v, %v; want %+v", got, ok, tt.want)
			}
		})
	}
}

// vLLM's names win over llama.cpp's in one body (ranks), and the
// llamacpp preset reads no vLLM name: a body of vLLM's alone fails it.
func TestLlamaCppNamesRankLast(t *testing.T) {
	def := Config{}.withDefaults().Names
	r := parseExposition([]byte(vllmSample+llamaCppSample), &def)
	if v, _ := r.running.value(); v != 7 {
		t.Errorf("running %v from vLLM's and llama.cpp's series, want vLLM's 7", v)
	}
	n := LlamaCpp()
	r = parseExposition([]byte(vllmSample), &n)
	if _, ok := r.running.value(); ok {
		t.Error("the llamacpp preset read a vLLM series")
	}
}
