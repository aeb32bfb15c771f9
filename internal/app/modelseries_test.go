package app

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A config reload that removes a model deletes its per-model series
// (requests, TTFT, duration, tokens, ...): before, they stayed exported
// for the life of the process, frozen, and a per-model panel listed a
// model no longer served. The models that remain keep their counts, and
// a model added back counts from zero on series the registry exports
// (a resolved child kept across its series' deletion would count
// unseen). Through real reloads of a served app.
func TestReloadDeletesTheSeriesOfARemovedModel(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`)
	}))
	t.Cleanup(be.Close)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(models ...string) {
		t.Helper()
		var b strings.Builder
		fmt.Fprintf(&b, "listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n%smodels:\n", noProbes)
		for _, m := range models {
			fmt.Fprintf(&b, "  - name: %s\n    backends:\n      - url: %s\n", m, be.URL)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("keep", "gone")
	a := newApp(t, path)
	url, _ := serveApp(t, a)
	chat := func(model string) {
		t.Helper()
		code, _, b := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", model, code, b)
		}
	}
	reload := func(models ...string) {
		t.Helper()
		write(models...)
		if err := a.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	chat("keep")
	chat("gone")
	for _, m := range []string{"keep", "gone"} {
		if got := modelSeries(t, a, m); got["sluice_requests_total"] != 1 || got["sluice_tokens_total"] != 5 || got["sluice_ttft_seconds"] != 1 {
			t.Fatalf("model %s before the reload: %v", m, got)
		}
	}

	reload("keep")
	if got := modelSeries(t, a, "gone"); len(got) != 0 {
		t.Errorf("after the reload that removed it, model gone still has series: %v", got)
	}
	chat("keep")
	if got := modelSeries(t, a, "keep"); got["sluice_requests_total"] != 2 || got["sluice_tokens_total"] != 10 ||
		got["sluice_ttft_seconds"] != 2 || got["sluice_request_duration_seconds"] != 2 {
		t.Errorf("model keep after the reload and one more request: %v; want its counts gone on (2 requests, 10 tokens)", got)
	}

	reload("keep", "gone")
	chat("gone")
	if got := modelSeries(t, a, "gone"); got["sluice_requests_total"] != 1 || got["sluice_tokens_total"] != 5 || got["sluice_ttft_seconds"] != 1 {
		t.Errorf("model gone added back, one request: %v; want its series exported again, from zero", got)
	}
}

// modelSeries sums, by metric name, the series of a's registry labelled
// model: counters' values, histograms' counts.
func modelSeries(t *testing.T, a *App, model string) map[string]float64 {
	t.Helper()
	mfs, err := a.deps.Registry.(*prometheus.Registry).Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "model" || l.GetValue() != model {
					continue
				}
				switch {
				case m.GetCounter() != nil:
					out[mf.GetName()] += m.GetCounter().GetValue()
				case m.GetHistogram() != nil:
					out[mf.GetName()] += float64(m.GetHistogram().GetSampleCount())
				default:
					out[mf.GetName()] += m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}
