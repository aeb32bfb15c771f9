package main

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/scaling"
)

func TestStartupEndsWhereTheFirstRampBegins(t *testing.T) {
	env, err := parseEnvelope("30s:0.5,60s:0.5>1.5,10s:1.5,20s:0.3,60s:0.3>1.5")
	if err != nil {
		t.Fatal(err)
	}
	if got := startupEnd(env); got != 30*time.Second {
		t.Fatalf("start-up ends at %s, want 30s", got)
	}
	flat := []phase{{D: 40 * time.Second, From: 1, To: 1}, {D: 20 * time.Second, From: 1, To: 0.3}}
	if got := startupEnd(flat); got != time.Minute {
		t.Fatalf("without a ramp the start-up is the whole envelope, got %s", got)
	}
}

func TestRejectionLineReadsTheModelsReasons(t *testing.T) {
	for _, c := range []struct {
		line   string
		reason string
		v      float64
		ok     bool
	}{
		{`sluice_queue_rejections_total{model="sim-model",reason="saturated"} 12`, "saturated", 12, true},
		{`sluice_queue_rejections_total{model="other",reason="saturated"} 12`, "", 0, false},
		{`sluice_queue_waiting{model="sim-model",class="interactive"} 3`, "", 0, false},
		{`# TYPE sluice_queue_rejections_total counter`, "", 0, false},
	} {
		reason, v, ok := rejectionLine(c.line)
		if ok != c.ok || reason != c.reason || v != c.v {
			t.Errorf("%q: %q %g %v, want %q %g %v", c.line, reason, v, ok, c.reason, c.v, c.ok)
		}
	}
}

func TestStartupCountsRefusalsBeforeTheRamp(t *testing.T) {
	res := &bench.Result{Records: []bench.Record{
		{Planned: 5 * time.Second, Status: 200},
		{Planned: 12 * time.Second, E2E: 100 * time.Millisecond, Status: 503},
		{Planned: 14 * time.Second, Status: 429},
		{Planned: 31 * time.Second, Status: 503}, // the ramp's
	}}
	polls := []Poll{{T: 1}, {T: 12, Signal: scaling.Signal{Capacity: 24, InUse: 24, Queued: 5}}, {T: 16}}
	st := Startup{End: 30}
	summarizeStartup(&st, res, polls)
	if st.Refusals != 2 || st.FirstRefusal != 12.1 || st.ByStatus["503"] != 1 || st.ByStatus["429"] != 1 {
		t.Fatalf("%+v", st)
	}
	if st.Capacity != 0 || st.MaxPollGap != 11 {
		t.Fatalf("the pool after the first refusal is the poll at 16 s, the gap 11 s: %+v", st)
	}
}
