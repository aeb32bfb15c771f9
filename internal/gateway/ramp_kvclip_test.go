package gateway

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	loadscrape "github.com/sluice-gw/sluice/internal/scrape"
	"github.com/sluice-gw/sluice/internal/sim"
)

// lazyVLLM serves the simulator's inference with the metrics of a vLLM
// engine whose KV cache holds cacheTokens and, as vLLM does, allocates an
// answer's blocks as it writes them: the usage is the tokens the running
// sequences hold (the simulator's, over its own larger budget, which
// starts every request at once) over cacheTokens, whatever their
// max_tokens.
func lazyVLLM(simTokens, cacheTokens int) func(*sim.Server) http.Handler {
	return func(s *sim.Server) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/metrics" {
				s.ServeHTTP(w, r)
				return
			}
			st := s.Stats()
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			fmt.Fprintf(w, "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine=\"0\",model_name=\"m1\"} %d\n", st.Running)
			fmt.Fprintf(w, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{engine=\"0\",model_name=\"m1\"} %d\n", st.Waiting)
			fmt.Fprintf(w, "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m1\"} %g\n", st.KVUsage*float64(simTokens)/float64(cacheTokens))
			fmt.Fprintf(w, "# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{block_size=\"16\",engine=\"0\",num_gpu_blocks=\"%d\"} 1.0\n", cacheTokens/16)
		})
	}
}

// A client that sends max_tokens of the model's whole context (32,768
// here; many do) on a vLLM engine of 65,536 KV tokens, nearly idle (A's two
// short streams and B's one hold under 1% of it): vLLM starts all of B's
// five at once, since it allocates an answer as it writes it. Counted
// whole, each needs 32,800 of the 62,000 free tokens: room for one, a
// ceiling of the four in flight, and B's five were held with the engine
// idle (the code of branch kvexact; the estimate from the running
// sequences before it gave hundreds). The KV need counts at most 4,096 of
// the answer (admission.KVAnswerClip, SGLang's own clip): fifteen fit, all
// five are granted and start.
func TestColdNewcomerWithWholeContextMaxTokensGrantedVLLM(t *testing.T) {
	names := loadscrape.VLLM()
	names.BatchBound = []string{} // vLLM reports none
	st, refused := coldRamp{
		sim:    sim.Config{Model: "m1", Seed: 1, Slots: 64, KVTokens: 1 << 20, DecodeStepBase: 50 * time.Millisecond},
		engine: lazyVLLM(1<<20, 65536),
		names:  names,
		words:  100, maxTokens: 200, newcomerMaxTokens: 32768, awaitStarts: 8,
	}.run(t)
	wantAllGranted(t, st, refused, "vLLM holds no answer before it writes it")
}
