package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/demo"
	"github.com/sluice-gw/sluice/internal/sim"
)

// chromium finds the browser: $SLUICE_CHROMIUM, else Debian's chromium
// (scripts/test.sh installs it). Absent, the test is skipped on a
// developer's machine and fails in CI (CI set), where it must run.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("SLUICE_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI is set and chromium is not installed: scripts/test.sh installs it (apt-get install chromium chromium-driver)")
	}
	t.Skip("chromium is not installed (apt-get install chromium, or set SLUICE_CHROMIUM); with CI set this test fails instead")
	return ""
}

// browser starts a headless chromium fit for root in a container and
// returns a tab, and the console errors and uncaught exceptions the page
// produced so far; extra adds chromium options.
func browser(t *testing.T, extra ...chromedp.ExecAllocatorOption) (context.Context, func() []string) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox, // root in a container has no user namespace for the sandbox
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), // /dev/shm is 64 MB in Docker
		chromedp.WindowSize(1440, 1100),
	)
	opts = append(opts, extra...)
	// The bound turns a hang into a failure; nothing is timed against it.
	ctx, cancelTimeout := context.WithTimeout(context.Background(), 4*time.Minute)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	var mu sync.Mutex
	var problems []string
	messages := chromedp.Console(tab)
	var wg sync.WaitGroup
	wg.Go(func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// The page's first try without a token is refused by design; the
			// browser logs that 401 as an error.
			if (m.Type == chromedp.ConsoleError || m.IsException()) && !strings.Contains(m.Text, "401 (Unauthorized)") {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	})
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancelTimeout()
		wg.Wait()
	})
	return tab, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

// until waits for a JavaScript condition to hold in the page.
func until(t *testing.T, tab context.Context, problems func() []string, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(tab, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(pollBound))); err != nil {
		page, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("%s: never happened (%v); console:\n%s\npage:\n%s", what, err, strings.Join(problems(), "\n"), page)
	}
}

// pollBound turns a condition that never comes into a failure; it is no
// timing assertion (a loaded machine only makes the wait longer).
var pollBound = 2 * time.Minute

func eval[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// simPool starts n simulators, each small enough for a handful of
// streams to fill it.
func simPool(t *testing.T, n int) ([]*sim.Server, []*httptest.Server) {
	var sims []*sim.Server
	var srvs []*httptest.Server
	for i := 0; i < n; i++ {
		s := sim.New(sim.Config{Slots: 4, MaxWaiting: 8, KVTokens: 4096, DecodeStepBase: 15 * time.Millisecond, Seed: int64(i + 1)})
		srv := httptest.NewServer(s)
		sims, srvs = append(sims, s), append(srvs, srv)
		t.Cleanup(func() { s.Close(); srv.Close() })
	}
	return sims, srvs
}

// load keeps clients streaming chat completions through the gateway,
// each as one of the tenants, until stop is called.
func load(gatewayURL string, clients int, keys []string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		key := keys[i%len(keys)]
		wg.Go(func() {
			body := `{"model":"sim-model","stream":true,"max_tokens":48,"messages":[{"role":"user","content":"dashboard load ` + key + `"}]}`
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gatewayURL+"/v1/chat/completions", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					// A refused client backs off as a real one would, rather
					// than spinning on refusals.
					select {
					case <-ctx.Done():
					case <-time.After(250 * time.Millisecond):
					}
				}
			}
		})
	}
	return func() { cancel(); wg.Wait() }
}

// The dashboard, in a real browser against a gateway in front of
// simulators: it asks for the admin token, shows live numbers that move
// when load arrives, and shows a killed backend as out of rotation.
func TestDashboardInBrowser(t *testing.T) {
	tab, problems := browser(t)
	sims, srvs := simPool(t, 3)
	var urls []string
	for _, s := range srvs {
		urls = append(urls, s.URL)
	}
	cfg := demo.GatewayConfig(urls)
	cfg.Admin.Token = "dash-admin-token"
	cfg.Models[0].Policy = "least_load" // scrapes the simulators' metrics: KV-cache use on the page
	for i := range cfg.Models[0].Backends {
		cfg.Models[0].Backends[i].MaxConcurrency = 4
	}
	// Forecasting on, at one-second intervals so that intervals close
	// while the test watches; scaling.lead 2s, so the history's intervals
	// have a forecast made two seconds before them.
	cfg.Forecast.Enabled, cfg.Forecast.Snapshot = true, "off"
	cfg.Forecast.Interval, cfg.Forecast.MaxHorizon = config.Duration(time.Second), config.Duration(time.Minute)
	cfg.Scaling.Lead = config.Duration(2 * time.Second)
	cfg.Health.MaxFails = 1
	cfg.Health.FailTimeout = config.Duration(10 * time.Minute) // a killed backend stays ejected while the test looks
	var keys []string
	for _, team := range []string{"search", "chat-app", "batch-eval", "support-bot", "docs-qa"} {
		key := "sk-" + team
		keys = append(keys, key)
		cfg.Auth.Keys = append(cfg.Auth.Keys, config.Tenant{Key: key, Tenant: team})
	}
	gw, err := demo.StartGateway(context.Background(), &cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Stop)

	// Without the token the page loads and asks for it; the token goes in a
	// header, never in the address.
	if err := chromedp.Do(tab, chromedp.Navigate(gw.AdminURL+"/"), chromedp.WaitVisible("#token")); err != nil {
		t.Fatal(err)
	}
	// A wrong token is refused and asked for again.
	if err := chromedp.Do(tab, chromedp.SendKeys("#token", "not-the-token"), chromedp.Click("#auth button")); err != nil {
		t.Fatal(err)
	}
	until(t, tab, problems, "a wrong token refused", `document.getElementById("auth-error").textContent === "that token was refused" && !document.getElementById("auth").hidden`)
	if err := chromedp.Do(tab, chromedp.SendKeys("#token", cfg.Admin.Token), chromedp.Click("#auth button")); err != nil {
		t.Fatal(err)
	}
	until(t, tab, problems, "first event", `Number(document.getElementById("conn").dataset.events) >= 2`)
	if loc := eval[string](t, tab, `location.href`); strings.Contains(loc, cfg.Admin.Token) {
		t.Fatalf("the token is in the address: %s", loc)
	}
	if eval[bool](t, tab, `!document.getElementById("auth").hidden`) {
		t.Fatal("token prompt still shown after a good token")
	}
	if got := eval[string](t, tab, `document.querySelector('#models tr[data-model="sim-model"] td:last-child').textContent`); got != "3 / 3" {
		t.Fatalf("backends up before any load: %q", got)
	}

	// Load: in-flight demand, a request rate and KV-cache use appear.
	stop := load(gw.URL, 24, keys)
	defer stop()
	until(t, tab, problems, "in-flight demand and a request rate under load",
		`Number(document.getElementById("models").dataset.inflight) > 0 &&
		 parseFloat(document.querySelector('#models tr[data-model="sim-model"] [data-field=rps]').textContent) > 0`)
	until(t, tab, problems, "KV-cache use scraped from the simulators",
		`[...document.querySelectorAll("tr[data-backend]")].some(r => /^[0-9]+%$/.test(r.cells[5].textContent) && r.cells[5].textContent !== "0%")`)
	until(t, tab, problems, "tenants listed in the queue table", `document.querySelector("#tenants tbody").textContent.includes("chat-app")`)
	// The forecast panel: the actual rate, the forecast at the lead and the
	// desired backends as numbers, and the sparkline with actual, forecast
	// and its p90 band drawn.
	const fcRow = `document.querySelector('#forecast tr[data-model="sim-model"]')`
	until(t, tab, problems, "the forecast against actual under load",
		`!document.getElementById("forecast").hidden && document.getElementById("forecast-off").hidden && `+fcRow+` &&
		 parseFloat(`+fcRow+`.querySelector("[data-field=actual-rps]").textContent) > 0 &&
		 /^[0-9.]+ \/ [0-9.]+$/.test(`+fcRow+`.querySelector("[data-field=lead]").textContent) &&
		 /^[0-9.]+ \([0-9]+ \/ 3 up\)$/.test(`+fcRow+`.querySelector("[data-field=desired]").textContent) &&
		 `+fcRow+`.querySelector("svg.spark polyline.actual").getAttribute("points").split(" ").length >= 3 &&
		 `+fcRow+`.querySelector("svg.spark polygon.band") !== null && `+fcRow+`.querySelector("svg.spark polyline.fmean") !== null`)

	// Kill one backend: it shows out of rotation, the pool 2 of 3.
	victim, _ := url.Parse(srvs[2].URL)
	sims[2].Close()
	srvs[2].CloseClientConnections()
	srvs[2].Close()
	until(t, tab, problems, "the killed backend shown out of rotation", fmt.Sprintf(
		`["ejected", "down", "open"].includes((document.querySelector('tr[data-backend=%q]') || {dataset: {}}).dataset.state)`, victim.Host))
	until(t, tab, problems, "the pool shown 2 of 3 up",
		`document.querySelector('#models tr[data-model="sim-model"] td:last-child').textContent === "2 / 3"`)
	until(t, tab, problems, "the killed backend's failures counted", fmt.Sprintf(
		`Number(document.querySelector('tr[data-backend=%q]').cells[7].textContent) > 0`, victim.Host))

	// A dozen intervals in the sparkline before the picture is taken.
	until(t, tab, problems, "a dozen intervals of forecast against actual",
		fcRow+`.querySelector("svg.spark polyline.actual").getAttribute("points").split(" ").length >= 12`)
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "dashboard.png")
	if os.Getenv("SLUICE_UPDATE_SCREENSHOT") != "" {
		out = filepath.Join("..", "..", "docs", "img", "dashboard.png") // the README's picture
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", out, len(png))
	if p := problems(); len(p) > 0 {
		t.Fatalf("the page logged errors (CSP violations or script errors):\n%s", strings.Join(p, "\n"))
	}
}
