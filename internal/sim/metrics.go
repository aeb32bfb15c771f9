package sim

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
)

// handleMetrics writes the Prometheus text exposition (format 0.0.4) by hand:
// a dozen series do not justify a registry, and hand-writing keeps every
// simulator free of shared state. Names and meanings follow vLLM so the
// gateway's scraper reads the simulator exactly as it reads vLLM, or
// llama.cpp's with Config.MetricsStyle MetricsLlamaCpp.
func (s *Server) handleMetrics(w http.ResponseWriter, _ *http.Request) {
	st := s.Stats()
	lbl := `{model_name="` + escapeLabel(s.cfg.Model) + `"}`
	var b bytes.Buffer
	b.Grow(4096)
	m := metricWriter{b: &b, labels: lbl}
	llamaCpp := s.cfg.MetricsStyle == MetricsLlamaCpp
	if llamaCpp {
		writeLlamaCpp(&b, st)
	} else {
		s.writeVLLM(m, st)
	}

	// Simulator-only series: the configured limits and what the fault and
	// overload paths did, so a test or dashboard can relate load to capacity.
	// The slots and the KV budget are what a gateway's default names read
	// as the engine's own account; llama.cpp reports neither.
	if !s.cfg.HideSlots && !llamaCpp {
		m.gauge("sluice_sim_slots", "Configured batch slots.", float64(s.cfg.Slots))
	}
	if !llamaCpp {
		m.gauge("sluice_sim_kv_tokens", "Configured KV-cache token budget.", float64(s.cfg.KVTokens))
	}
	m.gauge("sluice_sim_max_waiting", "Configured waiting-queue bound.", float64(s.cfg.MaxWaiting))
	m.counter("sluice_sim_requests_total", "Inference requests received.", st.Requests)
	m.counter("sluice_sim_rejected_total", "Requests answered 503 because the waiting queue was full.", st.Rejected503)
	m.counter("sluice_sim_cancelled_total", "Requests whose client went away before the end.", st.Cancelled)
	m.counter("sluice_sim_errors_total", "Requests failed with an injected 500 or by shutdown.", st.Errors)
	m.counter("sluice_sim_disconnects_total", "Connections cut by the disconnect fault.", st.Disconnected)

	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write(b.Bytes())
}

// writeVLLM writes vLLM's series, with its model_name label.
func (s *Server) writeVLLM(m metricWriter, st Stats) {
	m.gauge("vllm:num_requests_running", "Number of requests in model execution batches.", float64(st.Running))
	m.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", float64(st.Waiting))
	m.gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", st.KVUsage)
	m.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", st.KVUsage)
	// vLLM's info series for its cache: the size in tokens is
	// num_gpu_blocks x block_size, which the gateway reads to count a
	// newcomer's own tokens against the free cache. Blocks of 16 tokens,
	// vLLM's default, when the budget divides into them.
	blockSize := 16
	if s.cfg.KVTokens%blockSize != 0 {
		blockSize = 1
	}
	m.header("vllm:cache_config_info", "Information of the LLMEngine CacheConfig.", "gauge")
	m.sample("vllm:cache_config_info", `{block_size="`+strconv.Itoa(blockSize)+`",cache_dtype="auto",enable_prefix_caching="True",model_name="`+escapeLabel(s.cfg.Model)+
		`",num_cpu_blocks="None",num_gpu_blocks="`+strconv.Itoa(s.cfg.KVTokens/blockSize)+`"}`, "1.0")
	m.counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.", st.PromptTokens)
	m.counter("vllm:generation_tokens_total", "Number of generation tokens processed.", st.GeneratedTokens)
	m.header("vllm:request_success_total", "Count of successfully processed requests.", "counter")
	m.sample("vllm:request_success_total", `{finished_reason="length",model_name="`+escapeLabel(s.cfg.Model)+`"}`,
		strconv.FormatInt(st.Completed, 10))
	m.counter("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.", st.PrefixQueryTokens)
	m.counter("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", st.PrefixHitTokens)
	hitRate := 0.0
	if st.PrefixQueryTokens > 0 {
		hitRate = float64(st.PrefixHitTokens) / float64(st.PrefixQueryTokens)
	}
	m.gauge("vllm:gpu_prefix_cache_hit_rate", "GPU prefix cache block hit rate.", hitRate)
}

// writeLlamaCpp writes the series of llama.cpp's server (llama-server
// --metrics) the simulator can fill, as it writes them: "llamacpp:" names
// with no labels, a HELP and a TYPE line before each sample, counters
// first (tools/server: server_task_result_metrics::to_metrics; names and
// help texts from tools/server/README.md, "GET /metrics").
// requests_processing is the slots busy, requests_deferred the requests
// waiting for one; llama.cpp reports neither its slot count (--parallel)
// nor, in newer versions, its KV usage, so neither is written.
func writeLlamaCpp(b *bytes.Buffer, st Stats) {
	item := func(name, help, typ, value string) {
		b.WriteString("# HELP llamacpp:" + name + " " + help + "\n# TYPE llamacpp:" + name + " " + typ + "\nllamacpp:" + name + " " + value + "\n")
	}
	item("prompt_tokens_total", "Number of prompt tokens processed.", "counter", strconv.FormatInt(st.PromptTokens, 10))
	item("tokens_predicted_total", "Number of generation tokens processed.", "counter", strconv.FormatInt(st.GeneratedTokens, 10))
	item("requests_processing", "Number of requests processing.", "gauge", strconv.Itoa(st.Running))
	item("requests_deferred", "Number of requests deferred.", "gauge", strconv.Itoa(st.Waiting))
}

type metricWriter struct {
	b      *bytes.Buffer
	labels string
}

func (m metricWriter) header(name, help, typ string) {
	m.b.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
}

func (m metricWriter) sample(name, labels, value string) {
	m.b.WriteString(name + labels + " " + value + "\n")
}

func (m metricWriter) gauge(name, help string, v float64) {
	m.header(name, help, "gauge")
	m.sample(name, m.labels, strconv.FormatFloat(v, 'g', -1, 64))
}

func (m metricWriter) counter(name, help string, v int64) {
	m.header(name, help, "counter")
	m.sample(name, m.labels, strconv.FormatInt(v, 10))
}

// escapeLabel escapes a label value per the text exposition format.
func escapeLabel(v string) string {
	if !strings.ContainsAny(v, "\\\"\n") {
		return v
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}
