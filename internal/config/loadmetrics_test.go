package config

import (
	"slices"
	"strings"
	"testing"
)

// load_metrics.batch_bound_metrics: absent keeps the default names (the
// simulator's and SGLang's), a list replaces them, [] reads none (an empty,
// non-nil list, which scrape tells from the default), and a name with a
// blank or braces is refused.
func TestBatchBoundMetrics(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.LoadMetrics.BatchBoundMetrics, DefaultBatchBoundMetrics()) {
		t.Fatalf("default %v; want %v", c.LoadMetrics.BatchBoundMetrics, DefaultBatchBoundMetrics())
	}
	c, err = Parse([]byte(minimal + "load_metrics: {batch_bound_metrics: []}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.LoadMetrics.BatchBoundMetrics; got == nil || len(got) != 0 {
		t.Fatalf("[] read as %#v; want an empty, non-nil list", got)
	}
	if c.LoadMetrics.Same(Default().LoadMetrics) {
		t.Fatal("[] is the same scraping as the default names")
	}
	c, err = Parse([]byte(minimal + "load_metrics: {batch_bound_metrics: [my_engine:max_batch]}\n"))
	if err != nil || !slices.Equal(c.LoadMetrics.BatchBoundMetrics, []string{"my_engine:max_batch"}) {
		t.Fatalf("a list: %v, %v", c.LoadMetrics.BatchBoundMetrics, err)
	}
	_, err = Parse([]byte(minimal + "load_metrics: {batch_bound_metrics: [\"a b\"]}\n"))
	if err == nil || !strings.Contains(err.Error(), "batch_bound_metrics[0]") {
		t.Fatalf("a name with a blank: %v; want refused", err)
	}
}

// load_metrics.preset takes llamacpp (llama-server --metrics) beside vllm
// and sglang; anything else is refused naming the three.
func TestLoadMetricsPresetLlamaCpp(t *testing.T) {
	c, err := Parse([]byte(minimal + "load_metrics: {preset: llamacpp}\n"))
	if err != nil || c.LoadMetrics.Preset != "llamacpp" {
		t.Fatalf("preset llamacpp: %v, %q", err, c.LoadMetrics.Preset)
	}
	_, err = Parse([]byte(minimal + "load_metrics: {preset: ollama}\n"))
	if err == nil || !strings.Contains(err.Error(), "load_metrics.preset") || !strings.Contains(err.Error(), "llamacpp") {
		t.Fatalf("preset ollama: %v, want a refusal naming the key and the three presets", err)
	}
}
