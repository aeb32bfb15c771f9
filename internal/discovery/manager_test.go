package discovery

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// failing reports one failure, says so on reported, then waits.
type failing struct{ reported chan struct{} }

func (f failing) Run(ctx context.Context, sink Sink) {
	sink.Fail(context.DeadlineExceeded)
	close(f.reported)
	<-ctx.Done()
}

func changed(t *testing.T, m *Manager) {
	t.Helper()
	select {
	case <-m.Changed():
	case <-time.After(wait):
		t.Fatal("no change signalled")
	}
}

// Sets are merged per model, each backend once; a failing source adds
// nothing and is counted; an unchanged key keeps the sources running; a
// model dropped by Sync loses its set.
func TestManagerMergesKeepsAndStops(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewManager(reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer m.Stop()
	a, b := endpoint.Spec{URL: "http://a:1", Weight: 1}, endpoint.Spec{URL: "http://b:1", Weight: 1}
	fail := failing{reported: make(chan struct{})}
	want := map[string]Sources{"m": {Key: "k1", List: []Source{Static{a, b}, Static{b}, fail}}}
	m.Sync(want)
	changed(t, m)
	for len(m.Set("m")) < 2 {
		changed(t, m)
	}
	if got := urls(m.Set("m")); got != "http://a:1,http://b:1" && got != "http://b:1,http://a:1" {
		t.Fatalf("merged set %s", got)
	}
	<-fail.reported
	if n := testutil.ToFloat64(m.metrics.failures.WithLabelValues("m")); n != 1 {
		t.Errorf("sluice_discovery_failures_total = %v, want 1", n)
	}
	if n := testutil.ToFloat64(m.metrics.size.WithLabelValues("m")); n != 2 {
		t.Errorf("sluice_discovery_backends = %v, want 2", n)
	}

	before := m.running["m"]
	m.Sync(want)
	if m.running["m"] != before {
		t.Fatal("an unchanged source was restarted")
	}
	// Changed sources: the old set stands until a new source reports.
	hold := failing{reported: make(chan struct{})}
	m.Sync(map[string]Sources{"m": {Key: "k2", List: []Source{hold}}})
	<-hold.reported
	if got := len(m.Set("m")); got != 2 {
		t.Fatalf("changed sources emptied the set to %d before reporting", got)
	}
	m.Sync(map[string]Sources{"m": {Key: "k3", List: []Source{Static{a}}}})
	for len(m.Set("m")) != 1 {
		changed(t, m)
	}

	m.Sync(nil)
	if m.Set("m") != nil {
		t.Fatal("a stopped model keeps its set")
	}
}
