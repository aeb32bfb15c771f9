package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestAppReloadFailingAtAnyStageKeepsServing drives App.Reload itself: a
// new file whose build fails at a stage is refused, and the app keeps the
// same runtime, breakers, limiter and sluice_* metrics; once nothing
// fails, the same file is swapped in.
func TestAppReloadFailingAtAnyStageKeepsServing(t *testing.T) {
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(window string) {
		src := "listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n" +
			"breaker: {window: " + window + "}\n" +
			"rate_limits: {global: {requests: 'rate=10r/s burst=5'}}\n" +
			"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("30s")
	a := newApp(t, path)
	t.Cleanup(a.release)
	if a.built.limits == nil {
		t.Fatal("no rate limiter built from rate_limits.global")
	}
	reg := a.deps.Registry.(*prometheus.Registry)
	snapshot := func() (string, any) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "sluice_") {
				sb.WriteString(mf.String())
			}
		}
		rt := a.gw.Runtime()
		return sb.String(), [4]any{rt, a.built, a.built.limits, rt.Pools["m1"].Backends[0].Breaker()}
	}

	write("45s") // a new breaker window: new breakers on commit
	injected := errors.New("injected")
	for _, stage := range BuildStages {
		metrics, state := snapshot()
		a.deps.FailAt = func(s string) error {
			if s == stage {
				return injected
			}
			return nil
		}
		if err := a.Reload(); !errors.Is(err, injected) {
			t.Fatalf("reload failing at %s: %v", stage, err)
		}
		m2, s2 := snapshot()
		if s2 != state {
			t.Errorf("reload failing at %s changed the runtime, its breakers or its limiter", stage)
		}
		if m2 != metrics {
			t.Errorf("reload failing at %s changed the metrics", stage)
		}
	}
	a.deps.FailAt = nil
	_, before := snapshot()
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	after := a.gw.Runtime()
	if after == before.([4]any)[0] || after.Config.Breaker.Window.D().String() != "45s" ||
		after.Pools["m1"].Backends[0].Breaker() == before.([4]any)[3] {
		t.Fatal("the reload without a failure did not swap in the new runtime and breakers")
	}
}
