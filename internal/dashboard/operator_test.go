package dashboard_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/demo"
)

// A model whose pool is empty (discovery has found nothing yet) cannot
// serve: the page shows it red, as no backend to route to. Before, its
// row said "0 / 0" up in green and its backend panel "0 backends, all
// healthy" over an empty table, while every request got 503.
func TestDashboardShowsAnEmptyPoolAsAProblem(t *testing.T) {
	tab, problems := browser(t)
	targets := filepath.Join(t.TempDir(), "targets.yaml")
	if err := os.WriteFile(targets, []byte("[]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, srvs := simPool(t, 1)
	cfg := demo.GatewayConfig([]string{srvs[0].URL})
	// A second model, HTML in its name, whose only source finds nothing.
	cfg.Models = append(cfg.Models, config.Model{Name: `<img src=x onerror="window.injected=1">`,
		Discovery: []config.Discovery{{Type: "file", Path: targets}}})
	gw, err := demo.StartGateway(context.Background(), &cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Stop)
	if err := chromedp.Do(tab, chromedp.Navigate(gw.AdminURL+"/")); err != nil {
		t.Fatal(err)
	}
	until(t, tab, problems, "rendered", `Number(document.getElementById("conn").dataset.events) >= 1`)
	// The model's element, found by its name (no selector to escape).
	const name = `"<img src=x onerror=\"window.injected=1\">"`
	const cell = `[...document.querySelectorAll("#models tr")].find((r) => r.dataset.model === ` + name + `).lastElementChild`
	if got := eval[string](t, tab, cell+`.textContent + " " + `+cell+`.className`); got != "0 / 0 num bad" {
		t.Errorf("the empty pool's backends-up cell: %q, want \"0 / 0\" marked bad", got)
	}
	const summary = `[...document.querySelectorAll("#backends details")].find((d) => d.dataset.model === ` + name + `).querySelector("summary")`
	if got := eval[string](t, tab, summary+`.textContent`); !strings.Contains(got, "0 backends, no backend to route to") {
		t.Errorf("the empty pool's backend panel: %q, want it to say there is no backend to route to", got)
	}
	if !eval[bool](t, tab, summary+`.querySelector(".bad") !== null`) {
		t.Error("the empty pool's backend panel is not marked bad")
	}
	if got := eval[string](t, tab, `document.querySelector('#backends details[data-model="sim-model"] summary').textContent`); !strings.HasPrefix(got, "sim-model: 1 backend, all healthy") {
		t.Errorf("a pool of one: %q", got)
	}
	// The model's name is text, never markup.
	if !eval[bool](t, tab, `window.injected === undefined && document.querySelectorAll("main img").length === 0`) {
		t.Error("a model name was put in the page as HTML")
	}
	if p := problems(); len(p) > 0 {
		t.Fatalf("the page logged errors:\n%s", strings.Join(p, "\n"))
	}
}

// DNS rebinding, in a real browser: a page under a name the attacker
// controls, made to resolve to 127.0.0.1 (chromium's host-resolver-rules
// stand in for the attacker's DNS), is same-origin with the admin listener
// and its browser a loopback peer. Without admin.token, the page's own
// script read /status and /metrics (200, tenants and backend URLs); now it
// gets 403 admin_host_not_allowed, and the dashboard says why. The same
// listener under 127.0.0.1 is served as before.
func TestDashboardUnderARebindingNameGetsNoData(t *testing.T) {
	tab, problems := browser(t, chromedp.Flag("host-resolver-rules", "MAP rebind.attacker.test 127.0.0.1"))
	_, srvs := simPool(t, 1)
	cfg := demo.GatewayConfig([]string{srvs[0].URL})
	gw, err := demo.StartGateway(context.Background(), &cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Stop)
	admin, _ := url.Parse(gw.AdminURL)
	if err := chromedp.Do(tab, chromedp.Navigate("http://rebind.attacker.test:"+admin.Port()+"/")); err != nil {
		t.Fatal(err)
	}
	// What the attacker's script would do: read the data as its own origin.
	for _, path := range []string{"/status", "/metrics", "/scaling"} {
		got, err := chromedp.Run(tab, chromedp.Evaluate[string](`fetch("`+path+`").then(async (r) => r.status + " " + (await r.text()).slice(0, 1000))`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, "403 ") || !strings.Contains(got, "admin_host_not_allowed") || strings.Contains(got, srvs[0].URL[len("http://"):]) {
			t.Errorf("a rebinding page read %s: %.200q, want 403 admin_host_not_allowed", path, got)
		}
	}
	until(t, tab, problems, "the refusal explained", `document.getElementById("conn").textContent.includes("admin.token")`)
	// The operator, at the address, is served as before.
	if err := chromedp.Do(tab, chromedp.Navigate(gw.AdminURL+"/")); err != nil {
		t.Fatal(err)
	}
	until(t, tab, problems, "served at the address", `Number(document.getElementById("conn").dataset.events) >= 1`)
	for _, p := range problems() {
		// The refused fetches are logged by the browser; nothing else may be.
		if !strings.Contains(p, "403 (Forbidden)") {
			t.Errorf("the page logged: %s", p)
		}
	}
}
