package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// TestAppReloadFailingAtAnyStageKeepsServing drives App.Reload itself: a
// new file whose build fails at a stage is refused, and the app keeps the
// same runtime, breakers, limiter and sluice_* metrics; once nothing
// fails, the same file is swapped in.
func TestAppReloadFailingAtAnyStageKeepsServing(t *testing.T) {
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(window string) {
		src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\n" +
			"breaker: {window: " + window + "}\n" +
			"rate_limits: {global: {requests: 'rate=10r/s burst=5'}}\n" +
			"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
		writeFile(t, path, src)
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
			// sluice_config_* count the reloads themselves.
			if strings.HasPrefix(mf.GetName(), "sluice_") && !strings.HasPrefix(mf.GetName(), "sluice_config_") {
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

// A refused reload is visible to an operator after the moment it was
// logged: sluice_config_last_reload_successful is 0 until a reload is
// applied, and sluice_config_reloads_total counts each by result. Before,
// no metric said the file on disk was not the config serving.
func TestReloadOutcomeMetrics(t *testing.T) {
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	writeConfig(t, path, "m1", be.URL)
	a := newApp(t, path)
	t.Cleanup(a.release)
	reg := a.deps.Registry.(*prometheus.Registry)
	value := func(name, result string) float64 {
		t.Helper()
		return promtest.Value(t, reg, name, result)
	}
	if v := value("sluice_config_last_reload_successful", ""); v != 1 {
		t.Fatalf("at start: last_reload_successful %v, want 1", v)
	}
	started := value("sluice_config_last_reload_success_timestamp_seconds", "")
	if started <= 0 {
		t.Fatalf("at start: success timestamp %v", started)
	}

	if err := os.WriteFile(path, []byte("retry: {attempts: x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err == nil {
		t.Fatal("an invalid file was applied")
	}
	if v := value("sluice_config_last_reload_successful", ""); v != 0 {
		t.Errorf("after a refused reload: last_reload_successful %v, want 0", v)
	}
	if v := value("sluice_config_reloads_total", "refused"); v != 1 {
		t.Errorf("refused reloads %v, want 1", v)
	}
	if v := value("sluice_config_last_reload_success_timestamp_seconds", ""); v != started {
		t.Errorf("a refused reload moved the success timestamp: %v, was %v", v, started)
	}

	writeConfig(t, path, "m2", be.URL)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if v := value("sluice_config_last_reload_successful", ""); v != 1 {
		t.Errorf("after an applied reload: last_reload_successful %v, want 1", v)
	}
	if v := value("sluice_config_reloads_total", "applied"); v != 1 {
		t.Errorf("applied reloads %v, want 1", v)
	}
}
