package bench

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fastServer answers at once with a fixed small body: the generator, not the
// server, is what such a run measures.
func fastServer(tb testing.TB) *httptest.Server {
	const answer = `{"choices":[{"message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":16,"completion_tokens":4,"total_tokens":20}}`
	const stream = "data: {\"choices\":[{\"delta\":{\"content\":\"o\"}}]}\n\n" +
		"data: {\"choices\":[{\"delta\":{\"content\":\"k\"}}]}\n\n" +
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":16,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Header.Get("Accept") == "text/event-stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, stream)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, answer)
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// TestThroughputLocal checks that the generator sustains a target rate
// against a fast in-process server. It asserts wall-clock speed, so it only
// runs when asked:
//
//	SLUICE_BENCH_THROUGHPUT=1 [SLUICE_BENCH_RATES=5000,10000] [SLUICE_BENCH_SECONDS=5] \
//	  go test -run TestThroughputLocal -v ./internal/bench/
func TestThroughputLocal(t *testing.T) {
	if os.Getenv("SLUICE_BENCH_THROUGHPUT") == "" || testing.Short() {
		t.Skip("set SLUICE_BENCH_THROUGHPUT=1 to measure generator throughput")
	}
	secs := 5.0
	if s, err := strconv.ParseFloat(os.Getenv("SLUICE_BENCH_SECONDS"), 64); err == nil && s > 0 {
		secs = s
	}
	rates := []float64{5000}
	if env := os.Getenv("SLUICE_BENCH_RATES"); env != "" {
		rates = nil
		for _, f := range strings.Split(env, ",") {
			if r, err := strconv.ParseFloat(strings.TrimSpace(f), 64); err == nil {
				rates = append(rates, r)
			}
		}
	}
	srv := fastServer(t)
	for _, stream := range []bool{false, true} {
		for _, rate := range rates {
			d := time.Duration(secs * float64(time.Second))
			res := runOK(t, Config{Target: srv.URL, Stream: stream, Arrivals: Constant(rate, d, 16, 4), Timeout: 10 * time.Second})
			t.Logf("stream=%-5v offered %6.0f/s: sent %6.0f/s ok %6.0f/s (%d/%d ok)  lag p50 %.2fms p99 %.2fms max %.1fms  dropped %d errors %v  kept up %v",
				stream, rate, res.SentRPS, res.RPS, res.OK, res.Offered, res.Lag.P50, res.Lag.P99, res.Lag.Max,
				res.DroppedByClient, res.Errors, res.KeptUp)
			if rate <= 5000 && (res.OK < res.Offered || !res.KeptUp) {
				t.Errorf("the generator did not sustain %.0f req/s", rate)
			}
		}
	}
}

// BenchmarkOpenLoop replays b.N arrivals at 5,000/s against a fast server
// and reports the achieved rate and the scheduling lag.
func BenchmarkOpenLoop(b *testing.B) {
	srv := fastServer(b)
	const rate = 5000
	arr := Constant(rate, time.Duration(b.N)*time.Second/rate+time.Nanosecond, 16, 4)
	b.ResetTimer()
	res := runOK(b, Config{Target: srv.URL, Stream: true, Arrivals: arr, Timeout: 10 * time.Second})
	b.StopTimer()
	b.ReportMetric(res.SentRPS, "req/s")
	b.ReportMetric(res.Lag.P99, "lag-p99-ms")
	b.ReportMetric(float64(res.Offered-res.OK), "failed")
}
