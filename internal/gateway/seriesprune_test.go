package gateway

import (
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/telemetry"
)

// A request resolving a model's series while a reload removes the model
// (its make between the series' deletion and the children's) must not
// leave the child it made, whose series the reload deleted, kept: the
// model added back by the next reload counted on it, unexported, for the
// life of the process.
func TestSeriesMadeDuringAPruneAreNotKeptUnexported(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newSeries(telemetry.NewMetrics(reg))
	made := s.models.make
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.models.make = func(model string) *modelSeries {
		v := made(model)
		once.Do(func() { close(entered); <-release })
		return v
	}
	done := make(chan struct{})
	go func() { defer close(done); s.models.get("b") }()
	<-entered
	all := func(string) bool { return true }
	s.prune(func(m string) bool { return m != "b" }, all) // the reload removing b
	close(release)
	<-done
	s.prune(all, all) // the one adding it back
	s.models.get("b").duration.Observe(1)
	if n := durationCount(t, reg, "b"); n != 1 {
		t.Fatalf(`sluice_request_duration_seconds{model="b"} counted %d, want 1 (the request counted on a deleted series)`, n)
	}
}

func durationCount(t *testing.T, reg *prometheus.Registry, model string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "model" && l.GetValue() == model {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}
