package dashboard_test

import (
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// A model whose every backend is down or behind an open breaker serves
// nothing (no_healthy_backend, or its fallbacks), yet the replica stays
// ready while another model serves: the page listed nothing under "Needs
// attention" (seen in the operator's audit: a fallback model with its one
// backend killed showed only a red "0 / 1" in the tables). A model with
// an ejected backend left is not listed: ejected ones are still tried.
func TestDashboardListsAModelNoBackendCanServe(t *testing.T) {
	tab, problems := browser(t)
	doc := scaleDoc()
	models := doc["models"].([]any)
	for _, b := range models[1].(map[string]any)["backends"].([]any) {
		b.(map[string]any)["state"] = "down"
	}
	models[1].(map[string]any)["backends"].([]any)[4].(map[string]any)["state"] = "open"
	showStatus(t, tab, problems, doc)
	got := eval[[]string](t, tab, `[...document.querySelectorAll('#alert-list li[data-kind="pool-out"]')].map((li) => li.className + " " + li.textContent)`)
	if len(got) != 1 || !strings.HasPrefix(got[0], "bad model-1: no backend can serve (25 down or breaker open)") {
		t.Errorf("pool-out entries %q, want one, red, for model-1 alone", got)
	}
	// The off panel's wording agrees with the default it names.
	off := eval[string](t, tab, `document.getElementById("forecast-off").textContent`)
	if config.Default().Forecast.Enabled && strings.Contains(off, "false, the default") {
		t.Errorf("the forecast-off text %q calls false the default; forecast.enabled defaults to true", off)
	}
	if p := problems(); len(p) > 0 {
		t.Fatalf("the page logged errors:\n%s", strings.Join(p, "\n"))
	}
}
