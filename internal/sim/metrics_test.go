package sim

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape parses the text exposition into "name{labels}" → value, checking
// that every sample has a TYPE line before it.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	status, body := getRead(t, url+"/metrics")
	if status != 200 {
		t.Fatalf("/metrics: %d", status)
	}
	out := map[string]float64{}
	typed := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			typed[strings.Fields(f)[0]] = true
			continue
		}
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		key := line[:i]
		name, _, _ := strings.Cut(key, "{")
		if !typed[name] {
			t.Errorf("sample without TYPE: %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q: %v", line, err)
		}
		out[key] = v
	}
	return out
}

func TestMetricsVLLMNames(t *testing.T) {
	cfg := fastConfig()
	cfg.Model = `m"x`
	cfg.DecodeStepBase = 5 * time.Millisecond
	s, url := startSim(t, cfg)
	body := strings.Replace(chatBody(words("a", 40), 10000, `,"stream":true`), "sim-model", `m\"x`, 1)
	resp := post(t, t.Context(), url+"/v1/chat/completions", body)
	defer resp.Body.Close()
	waitFor(t, "a running sequence with output", func() bool {
		st := s.Stats()
		return st.Running == 1 && st.GeneratedTokens > 0
	})

	m := scrape(t, url)
	lbl := `{model_name="m\"x"}`
	if v := m["vllm:num_requests_running"+lbl]; v != 1 {
		t.Errorf("running %v", v)
	}
	if v, ok := m["vllm:num_requests_waiting"+lbl]; !ok || v != 0 {
		t.Errorf("waiting %v %v", v, ok)
	}
	for _, name := range []string{"vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"} {
		// 40 prompt tokens and a few generated of 65536.
		if v := m[name+lbl]; v <= 40.0/65536 || v > 0.01 {
			t.Errorf("%s = %v", name, v)
		}
	}
	if v := m["vllm:prompt_tokens_total"+lbl]; v != 40 {
		t.Errorf("prompt tokens %v", v)
	}
	if v := m["vllm:generation_tokens_total"+lbl]; v < 1 {
		t.Errorf("generation tokens %v", v)
	}
	for _, key := range []string{
		`vllm:request_success_total{finished_reason="length",model_name="m\"x"}`,
		"vllm:prefix_cache_queries_total" + lbl, "vllm:prefix_cache_hits_total" + lbl,
		"vllm:gpu_prefix_cache_hit_rate" + lbl, "sluice_sim_slots" + lbl, "sluice_sim_rejected_total" + lbl,
	} {
		if _, ok := m[key]; !ok {
			t.Errorf("missing %s", key)
		}
	}
	if v := m["vllm:prefix_cache_queries_total"+lbl]; v != 40 {
		t.Errorf("prefix queries %v", v)
	}
}

// HideSlots presents the simulator as vLLM does: no batch bound on
// /metrics, the running and waiting gauges still there.
func TestMetricsHideSlots(t *testing.T) {
	cfg := fastConfig()
	cfg.HideSlots = true
	_, url := startSim(t, cfg)
	m := scrape(t, url)
	lbl := `{model_name="sim-model"}`
	if v, ok := m["sluice_sim_slots"+lbl]; ok {
		t.Errorf("sluice_sim_slots %v shown with HideSlots", v)
	}
	for _, name := range []string{"vllm:num_requests_running", "vllm:num_requests_waiting", "sluice_sim_max_waiting"} {
		if _, ok := m[name+lbl]; !ok {
			t.Errorf("missing %s", name)
		}
	}
}

// MetricsStyle llamacpp presents the simulator as llama.cpp's server does:
// its two queue gauges and token counters, unlabelled, each after its HELP
// and TYPE lines; no vLLM series, no slot count and no KV budget (llama.cpp
// reports neither); the simulator's own counters stay.
func TestMetricsLlamaCppStyle(t *testing.T) {
	cfg := fastConfig()
	cfg.MetricsStyle = MetricsLlamaCpp
	_, url := startSim(t, cfg)
	m := scrape(t, url)
	for _, name := range []string{"llamacpp:requests_processing", "llamacpp:requests_deferred", "llamacpp:prompt_tokens_total",
		"llamacpp:tokens_predicted_total", `sluice_sim_max_waiting{model_name="sim-model"}`, `sluice_sim_requests_total{model_name="sim-model"}`} {
		if _, ok := m[name]; !ok {
			t.Errorf("missing %s", name)
		}
	}
	for key := range m {
		if strings.HasPrefix(key, "vllm:") || strings.HasPrefix(key, "sluice_sim_slots") || strings.HasPrefix(key, "sluice_sim_kv_tokens") {
			t.Errorf("%s shown in the llamacpp style", key)
		}
	}
	_, body := getRead(t, url+"/metrics")
	want := "# HELP llamacpp:requests_deferred Number of requests deferred.\n# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 0\n"
	if !strings.Contains(string(body), want) {
		t.Errorf("body lacks %q as llama.cpp writes it:\n%s", want, body)
	}
}
