package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// modelVecs are the vectors with a model label.
func (m *Metrics) modelVecs() []*prometheus.MetricVec {
	return []*prometheus.MetricVec{m.Requests.MetricVec, m.TTFT.MetricVec, m.Duration.MetricVec, m.Tokens.MetricVec,
		m.Retries.MetricVec, m.Hedges.MetricVec, m.Errors.MetricVec, m.SlotWaits.MetricVec}
}

// KeepModels deletes every series of the models keep rejects, in every
// vector labelled by model, and reports how many models it deleted
// series of. A model a reload removed kept its series for the life of
// the process before: its counts frozen, exported for ever, and a
// dashboard's per-model panel listing a model no longer served. The
// series of models kept are not touched: their counts go on.
// model="" (requests for a model not configured) is always kept. It
// reads each vector's series (one Collect), off the request path: a
// reload calls it.
func (m *Metrics) KeepModels(keep func(model string) bool) int {
	gone := map[string]bool{}
	for _, v := range m.modelVecs() {
		for _, model := range modelsOf(v) {
			if model != "" && !keep(model) {
				gone[model] = true
			}
		}
	}
	for model := range gone {
		for _, v := range m.modelVecs() {
			v.DeletePartialMatch(prometheus.Labels{"model": model})
		}
	}
	return len(gone)
}

// modelsOf is the model label's values among v's series.
func modelsOf(v *prometheus.MetricVec) []string {
	ch := make(chan prometheus.Metric, 64)
	go func() { // ends when Collect has sent every series
		v.Collect(ch)
		close(ch)
	}()
	seen := map[string]bool{}
	var out []string
	for s := range ch {
		var pb dto.Metric
		if s.Write(&pb) != nil {
			continue
		}
		for _, l := range pb.GetLabel() {
			if l.GetName() == "model" && !seen[l.GetValue()] {
				seen[l.GetValue()] = true
				out = append(out, l.GetValue())
			}
		}
	}
	return out
}
