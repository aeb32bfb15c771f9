package discovery

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
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
	m := NewManager(reg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
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

// scripted is a source the test drives: each func sent runs on the
// source's goroutine with its sink; done is closed after each.
type scripted struct {
	do   chan func(Sink)
	done chan struct{}
}

func (s scripted) Run(ctx context.Context, sink Sink) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-s.do:
			f(sink)
			s.done <- struct{}{}
		}
	}
}

func (s scripted) run(f func(Sink)) { s.do <- f; <-s.done }

// A source failing again and again (an agent down, retried with backoff)
// keeps its set, is counted at each failure but logged once, shows on the
// failing gauge, and is logged once more when it reports again; the same
// set reported on recovery rebuilds nothing.
func TestManagerLogsFailureRunsOnce(t *testing.T) {
	var logs logbuf.Buffer
	reg := prometheus.NewRegistry()
	m := NewManager(reg, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	defer m.Stop()
	src := scripted{do: make(chan func(Sink)), done: make(chan struct{})}
	m.Sync(map[string]Sources{"m": {Key: "k", List: []Source{src}}})
	a := []endpoint.Spec{{URL: "http://a:1", Weight: 1}}
	src.run(func(s Sink) { s.Update(a) })
	changed(t, m)
	for range 5 {
		src.run(func(s Sink) { s.Fail(io.ErrUnexpectedEOF) })
	}
	if got := urls(m.Set("m")); got != "http://a:1" {
		t.Fatalf("set after failures %q", got)
	}
	if n := testutil.ToFloat64(m.metrics.failures.WithLabelValues("m")); n != 5 {
		t.Errorf("sluice_discovery_failures_total = %v, want 5", n)
	}
	if n := testutil.ToFloat64(m.metrics.failing.WithLabelValues("m")); n != 1 {
		t.Errorf("sluice_discovery_sources_failing = %v while failing, want 1", n)
	}
	if n := strings.Count(logs.String(), "discovery failed"); n != 1 {
		t.Errorf("%d failure lines for one run of 5 failures, want 1:\n%s", n, logs.String())
	}
	src.run(func(s Sink) { s.Update(slices.Clone(a)) })
	if n := testutil.ToFloat64(m.metrics.failing.WithLabelValues("m")); n != 0 {
		t.Errorf("sluice_discovery_sources_failing = %v after recovery, want 0", n)
	}
	if n := strings.Count(logs.String(), "discovery recovered"); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, logs.String())
	}
	select {
	case <-m.Changed():
		t.Error("the unchanged set reported on recovery signalled a rebuild")
	default:
	}
	src.run(func(s Sink) { s.Fail(io.EOF) })
	if n := strings.Count(logs.String(), "discovery failed"); n != 2 {
		t.Errorf("%d failure lines after a second run began, want 2", n)
	}
}

// A set past the bound (a selector matching every pod, a zone of
// thousands of records) is refused as a failure: the last set stands.
func TestManagerRefusesAHugeSet(t *testing.T) {
	m := NewManager(prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer m.Stop()
	src := scripted{do: make(chan func(Sink)), done: make(chan struct{})}
	m.Sync(map[string]Sources{"m": {Key: "k", List: []Source{src}}})
	src.run(func(s Sink) { s.Update([]endpoint.Spec{{URL: "http://a:1", Weight: 1}}) })
	changed(t, m)
	huge := make([]endpoint.Spec, maxTargets+1)
	for i := range huge {
		huge[i] = endpoint.Spec{URL: fmt.Sprintf("http://10.%d.%d.%d:8000", i>>16&255, i>>8&255, i&255), Weight: 1}
	}
	src.run(func(s Sink) { s.Update(huge) })
	if got := urls(m.Set("m")); got != "http://a:1" {
		t.Fatalf("set after a huge report: %d backends, want the last set", len(m.Set("m")))
	}
	if n := testutil.ToFloat64(m.metrics.failures.WithLabelValues("m")); n != 1 {
		t.Errorf("sluice_discovery_failures_total = %v, want 1", n)
	}
	src.run(func(s Sink) { s.Update(huge[:maxTargets]) })
	if n := len(m.Set("m")); n != maxTargets {
		t.Errorf("%d backends from a set at the bound, want %d", n, maxTargets)
	}
}

// silent never reports (a source still starting).
type silent struct{}

func (silent) Run(ctx context.Context, _ Sink) { <-ctx.Done() }

// State counts a model's sources: failing (with their errors, bounded),
// pending, and the backends known.
func TestManagerState(t *testing.T) {
	m := NewManager(nil, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer m.Stop()
	if _, ok := m.State("m"); ok {
		t.Fatal("a model with no source has a state")
	}
	fail := failing{reported: make(chan struct{})}
	m.Sync(map[string]Sources{"m": {Key: "k", List: []Source{Static{{URL: "http://a:1", Weight: 1}}, fail, silent{}}}})
	<-fail.reported
	for len(m.Set("m")) < 1 {
		changed(t, m)
	}
	st, ok := m.State("m")
	if !ok || st.Sources != 3 || st.Failing != 1 || st.Pending != 1 || st.Backends != 1 {
		t.Fatalf("state %+v, want 3 sources, 1 failing, 1 pending, 1 backend", st)
	}
	if len(st.Errors) != 1 || st.Errors[0] != "source 1 (source): "+context.DeadlineExceeded.Error() {
		t.Errorf("errors %q", st.Errors)
	}
	s := &sink{m: m, r: m.running["m"], model: "m", i: 1}
	s.Fail(fmt.Errorf("agent answered 500: %s", strings.Repeat("x", 10_000)))
	if st, _ := m.State("m"); len(st.Errors[0]) > maxStateError+len("source 1 (source): ")+len("…") {
		t.Errorf("an error of 10,000 bytes shown at %d", len(st.Errors[0]))
	}
	s.Update([]endpoint.Spec{{URL: "http://b:1", Weight: 1}})
	if st, _ := m.State("m"); st.Failing != 0 || st.Errors != nil || st.Backends != 2 {
		t.Errorf("after recovery %+v", st)
	}
}

// A model's sources at start: initialising (not Known) and failing since
// the first failure, which the clock dates; a set makes it Known, and a
// later failure is dated anew while the set stands. A model a reload adds
// is not the startup's; one whose sources a reload changes stays Known.
// Held reads are counted.
func TestManagerStateKnownAndFailingSince(t *testing.T) {
	reg := prometheus.NewRegistry()
	now := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	m := NewManager(reg, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return now })
	defer m.Stop()
	fail := failing{reported: make(chan struct{})}
	m.Sync(map[string]Sources{"m": {Key: "k", List: []Source{fail}}})
	<-fail.reported
	st, _ := m.State("m")
	if st.Known || !st.Startup || !st.FailingSince.Equal(now) || len(st.Failures) != 1 || st.Failures[0] != "source 0 (source)" {
		t.Fatalf("failing from the start: %+v", st)
	}
	if v := testutil.ToFloat64(m.metrics.known.WithLabelValues("m")); v != 0 {
		t.Errorf("sluice_discovery_initialized = %v before any set", v)
	}
	if v := testutil.ToFloat64(m.metrics.since.WithLabelValues("m")); v != float64(now.Unix()) {
		t.Errorf("sluice_discovery_failing_since_timestamp_seconds = %v, want %d", v, now.Unix())
	}
	s := &sink{m: m, r: m.running["m"], model: "m", i: 0}
	s.Update([]endpoint.Spec{{URL: "http://a:1", Weight: 1}})
	if st, _ := m.State("m"); !st.Known || !st.FailingSince.IsZero() || st.Failures != nil {
		t.Fatalf("after a set: %+v", st)
	}
	if v := testutil.ToFloat64(m.metrics.known.WithLabelValues("m")); v != 1 {
		t.Errorf("sluice_discovery_initialized = %v after a set", v)
	}
	now = now.Add(time.Hour)
	s.Fail(io.EOF)
	now = now.Add(time.Minute)
	s.Fail(io.EOF) // the same run: its start stands
	if st, _ := m.State("m"); !st.Known || st.Backends != 1 || !st.FailingSince.Equal(now.Add(-time.Minute)) {
		t.Fatalf("failing after a set: %+v", st)
	}
	s.Unsettled(io.ErrUnexpectedEOF)
	s.Unsettled(io.ErrUnexpectedEOF)
	if v := testutil.ToFloat64(m.metrics.held.WithLabelValues("m")); v != 2 {
		t.Errorf("sluice_discovery_reads_held_total = %v, want 2", v)
	}

	late := failing{reported: make(chan struct{})}
	m.Sync(map[string]Sources{"m": {Key: "k2", List: []Source{silent{}}}, "n": {Key: "k", List: []Source{late}}})
	<-late.reported
	if st, _ := m.State("n"); st.Known || st.Startup {
		t.Errorf("a model a reload added: %+v", st)
	}
	if st, _ := m.State("m"); !st.Known || !st.Startup || st.Backends != 1 {
		t.Errorf("a model whose sources a reload changed: %+v", st)
	}
}
