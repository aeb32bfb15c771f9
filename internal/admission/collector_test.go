package admission

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gathered is one metric's value by its label set ("k=v,k=v" in label order).
type gathered map[string]float64

func gather(t *testing.T, c prometheus.Collector) map[string]gathered {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]gathered)
	for _, mf := range mfs {
		g := make(gathered)
		for _, m := range mf.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + ","
			}
			switch {
			case m.GetGauge() != nil:
				g[key] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				g[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				g[key+"count"] = float64(m.GetHistogram().GetSampleCount())
				g[key+"sum"] = m.GetHistogram().GetSampleSum()
			}
		}
		out[mf.GetName()] = g
	}
	return out
}

func TestCollectorExportsQueueState(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Fair: true, MaxQueuedPerTenant: 1}, newCapacity(1).get, clk.Now)
	held := grantedT(t, q, Request{Tenant: "a", Cost: 10})
	w := submitT(t, q, Request{Tenant: "b", Class: Batch, Cost: 30})
	if _, _, err := q.submit(Request{Tenant: "b", Cost: 5}); err == nil {
		t.Fatal("want a per-tenant refusal")
	}
	cw := submitT(t, q, Request{Tenant: "c", Class: Batch, Cost: 7})
	clk.Advance(1500 * time.Millisecond)
	held.Release() // c (cost 7) goes before b (cost 30): it waited 1.5s
	if cw.state != granted || cw.ticket.Waited() != 1500*time.Millisecond {
		t.Fatalf("c: state %v", cw.state)
	}

	got := gather(t, NewCollector(func() map[string]*Queue { return map[string]*Queue{"m": q} }))
	for _, c := range []struct {
		metric, labels string
		want           float64
	}{
		{"sluice_queue_in_use", "model=m,", 1},
		{"sluice_queue_capacity", "model=m,", 1},
		{"sluice_queue_waiting", "class=batch,model=m,", 1},
		{"sluice_queue_waiting", "class=interactive,model=m,", 0},
		{"sluice_queue_waiting_cost", "class=batch,model=m,", 30},
		{"sluice_queue_rejections_total", "model=m,reason=tenant_queue_full,", 1},
		{"sluice_queue_rejections_total", "model=m,reason=saturated,", 0},
		{"sluice_queue_cancelled_total", "model=m,", 0},
		{"sluice_queue_wait_seconds", "class=batch,model=m,count", 1},
		{"sluice_queue_wait_seconds", "class=batch,model=m,sum", 1.5},
		{"sluice_queue_wait_seconds", "class=interactive,model=m,count", 1}, // a, granted at once
	} {
		v, ok := got[c.metric][c.labels]
		if !ok || v != c.want {
			t.Errorf("%s{%s} = %v (present %v), want %v", c.metric, c.labels, v, ok, c.want)
		}
	}
	if got["sluice_queue_drain_rate"]["model=m,"] <= 0 {
		t.Error("drain rate not exported")
	}
	if w.state != waiting {
		t.Fatal("b should still wait")
	}
	if n := len(gather(t, NewCollector(func() map[string]*Queue { return nil }))); n != 0 {
		t.Fatalf("no pools, %d metric families", n)
	}
}

// Preemptions of spare work are exported: a live request that finds the
// pool full of spare tickets stops the youngest (spare.go).
func TestCollectorExportsPreemptions(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: true}, newCapacity(1).get, clk.Now)
	var stopped int
	spare := grantedT(t, q, Request{Tenant: "batch", Class: Batch, Spare: true, Preempt: func() { stopped++ }})
	clk.Advance(1500 * time.Millisecond) // the job's work so far, lost
	w := submitT(t, q, Request{Tenant: "a", Deadline: clk.Now().Add(time.Second)})
	if stopped != 1 {
		t.Fatalf("spare ticket preempted %d times, want 1", stopped)
	}
	spare.Release()
	if w.state != granted {
		t.Fatalf("live request: state %v, want granted", w.state)
	}
	got := gather(t, NewCollector(func() map[string]*Queue { return map[string]*Queue{"m": q} }))
	if v, ok := got["sluice_queue_preempted_total"]["model=m,"]; !ok || v != 1 {
		t.Fatalf("sluice_queue_preempted_total = %v (present %v), want 1", v, ok)
	}
	if v, ok := got["sluice_queue_preempted_seconds_total"]["model=m,"]; !ok || v != 1.5 {
		t.Fatalf("sluice_queue_preempted_seconds_total = %v (present %v), want 1.5 (the ticket's age when preempted)", v, ok)
	}
}
