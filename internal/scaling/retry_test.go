package scaling

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// A refused request's client is awaited until its expiry: its return is
// no new demand, and while away it counts in the in-flight floor with the
// slots in use (a client waiting for the pool). Past the expiry it is
// forgotten: a client that gave up is no demand.
func TestAwaitedClientsAreDemandOnce(t *testing.T) {
	m := NewMeter(10 * time.Second)
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	for k := uint64(1); k <= 18; k++ {
		m.Await("m", k, t0, t0.Add(3*time.Second))
	}
	m.Await("m", 0, t0, t0.Add(time.Hour))     // no key: not awaited
	m.Await("m", 99, t0, t0)                   // no wait: not awaited
	m.Await("m", 1, t0, t0.Add(4*time.Second)) // refused again: one client still
	if r := m.Read("m", t0, nil); r.Awaited != 18 {
		t.Fatalf("awaited %d, want the 18 refused clients", r.Awaited)
	}
	pool := PoolState{Backends: []BackendState{{Name: "a", Slots: 2}, {Name: "b", Slots: 2}, {Name: "c", Slots: 2}}, InUse: 6, Capacity: 6}
	s := Plan("m", t0, m.Read("m", t0, []string{"a", "b", "c"}), pool, Policy{PriorSlotRate: 1})
	// 6 in service + 18 waiting = 24 clients over 2 slots per backend.
	if s.AwaitedClients != 18 || s.InFlightBackends != 12 || s.Need.Demand != 12 {
		t.Fatalf("awaited %d, in flight %.2f, demand %.2f: want 18, 12, 12", s.AwaitedClients, s.InFlightBackends, s.Need.Demand)
	}
	if !m.Returned("m", 2, t0.Add(time.Second)) || m.Returned("m", 2, t0.Add(time.Second)) || m.Returned("other", 3, t0) {
		t.Fatal("a return is recognised once, and only for its model")
	}
	if m.Returned("m", 3, t0.Add(3*time.Second)) {
		t.Fatal("a client not back by its expiry is forgotten")
	}
	if r := m.Read("m", t0.Add(3*time.Second), nil); r.Awaited != 1 {
		t.Fatalf("awaited %d after 3 s, want only the client refused again (until 4 s)", r.Awaited)
	}
	if r := m.Read("m", t0.Add(4*time.Second), nil); r.Awaited != 0 {
		t.Fatalf("awaited %d after 4 s, want 0", r.Awaited)
	}
}

// The memory of refused requests is bounded: past maxAwaited a refusal is
// not remembered (its retry counts as an arrival) and the heap of
// expiries does not grow past twice the bound, however often keys are
// taken back.
func TestAwaitedIsBounded(t *testing.T) {
	m := NewMeter(0)
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	for k := uint64(1); k <= maxAwaited+10; k++ {
		m.Await("m", k, t0, t0.Add(time.Minute))
	}
	if r := m.Read("m", t0, nil); r.Awaited != maxAwaited {
		t.Fatalf("awaited %d, want the bound %d", r.Awaited, maxAwaited)
	}
	for k := uint64(1); k <= 3*maxAwaited; k++ {
		m.Returned("m", k, t0)
		m.Await("m", k, t0, t0.Add(time.Minute))
	}
	mm, _ := m.model("m")
	if n := len(mm.awaited.exp); n > 2*maxAwaited {
		t.Fatalf("%d expiries kept, want at most %d", n, 2*maxAwaited)
	}
}

// Refused requests are awaited by a hash of what their clients chose (an
// Idempotency-Key, or the body): distinct ones past the bound are not
// remembered, and /metrics says how many are and what the bound is.
func TestAwaitedRefusalsBoundedAndExported(t *testing.T) {
	m := NewMeter(10 * time.Second)
	for i := range maxAwaited + 500 {
		m.Await("m", uint64(i)*2+1, t0, t0.Add(time.Minute))
	}
	r := m.Read("m", t0, nil)
	if r.Awaited != maxAwaited {
		t.Fatalf("%d refusals awaited, want the bound %d", r.Awaited, maxAwaited)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(func() []Signal { return []Signal{Plan("m", t0, r, pool(0), Policy{})} }))
	want := fmt.Sprintf(`
# HELP sluice_model_awaited_clients_limit The most refused requests awaited per model.
# TYPE sluice_model_awaited_clients_limit gauge
sluice_model_awaited_clients_limit %d
`, maxAwaited)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_model_awaited_clients_limit"); err != nil {
		t.Fatal(err)
	}
	if v := promtest.Value(t, reg, "sluice_model_awaited_clients", "m"); v != maxAwaited {
		t.Fatalf("sluice_model_awaited_clients %v, want %d", v, maxAwaited)
	}
}
