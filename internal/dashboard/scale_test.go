package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/sluice-gw/sluice/internal/dashboard"
)

// scaleDoc is a /status document (docs/STATUS.md) of two models with 25
// backends each and 200 tenants, with one backend in each unusual state.
func scaleDoc() map[string]any {
	var models []any
	for m := 0; m < 2; m++ {
		var backends []any
		for i := 0; i < 25; i++ {
			b := map[string]any{"name": fmt.Sprintf("gpu-%d-%02d:8000", m, i), "url": "http://x", "state": "healthy", "breaker": "closed",
				"inflight": i % 9, "limit": 8, "slow_start": 1, "failures": 0,
				"ttft":    map[string]any{"p50_ms": 120, "p99_ms": 900, "samples": 50},
				"scraped": map[string]any{"running": 8, "waiting": 2, "kv_cache_usage": 0.5 + float64(i)/60, "age_ms": 300}}
			switch i {
			case 3:
				b["state"] = "ejected"
			case 4:
				b["state"], b["breaker"] = "open", "half-open"
			case 5:
				b["slow_start"] = 0.4
			case 6:
				b["state"] = "down"
			}
			backends = append(backends, b)
		}
		tenants := map[string]any{}
		for i := 0; i < 100; i++ {
			tenants[fmt.Sprintf("tenant-%d-%03d", m, i)] = map[string]any{"queued": i % 7, "in_use": i % 3, "queued_cost": 10,
				"waiting": []any{map[string]any{"class": "interactive", "queued": i % 7, "oldest_wait_ns": i * 1e7}}}
		}
		models = append(models, map[string]any{
			"model": fmt.Sprintf("model-%d", m), "policy": "least_load", "backends": backends, "draining": 1,
			"draining_backends": []any{map[string]any{"name": fmt.Sprintf("old-%d:8000", m), "state": "healthy", "inflight": 2, "limit": 8,
				"slow_start": 1, "ttft": map[string]any{}}},
			"queue":  map[string]any{"in_use": 100, "capacity": 180, "queued": 300, "tenants": tenants},
			"slo":    map[string]any{"interactive_ms": 2000, "batch_ms": 60000},
			"demand": map[string]any{"in_flight": 100, "queued": 300, "capacity": 180},
			"ttft":   map[string]any{"p50_ms": 150, "p99_ms": 2500, "samples": 1200},
			"errors": map[string]any{"queue_full": 40, "rate_limit_exceeded": 7}, "requests_total": 5000,
		})
	}
	return map[string]any{"time": "2026-01-01T00:00:00Z", "models": models,
		"cache": map[string]any{"enabled": true, "hits": 30, "misses": 70, "hit_ratio": 0.3, "coalesced": 5},
		"jobs":  map[string]any{"enabled": true, "running": 3, "backlog": 120, "active_batches": 2}, "forecast": nil}
}

// showStatus opens the page in tab against a server whose /status/stream
// sends doc (a /status document) once and stays open, as the gateway's
// does, and waits until the page has rendered it.
func showStatus(t *testing.T, tab context.Context, problems func() []string, doc map[string]any) {
	t.Helper()
	body, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if dashboard.Serve(w, r) {
			return
		}
		if r.URL.Path != "/status/stream" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "event: status\ndata: %s\n\n", body)
		w.(http.Flusher).Flush()
		select { // held open, as the gateway's stream is
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })

	if err := chromedp.Do(tab, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	until(t, tab, problems, "rendered", `Number(document.getElementById("conn").dataset.events) >= 1`)
}

// At 50 backends and 200 tenants the page stays readable: the tenant
// table shows the most queued fifteen (all on request), backend tables
// scroll inside their panel with problems first, and every unusual state
// has its own label.
func TestDashboardAtScale(t *testing.T) {
	tab, problems := browser(t)
	showStatus(t, tab, problems, scaleDoc())
	if !eval[bool](t, tab, `!document.getElementById("forecast-off").hidden && document.getElementById("forecast").hidden`) {
		t.Error("with forecast null the panel should say forecasting is off")
	}
	if n := eval[int](t, tab, `document.querySelectorAll("#tenants tbody tr").length`); n != 15 {
		t.Errorf("tenant rows: %d, want the top 15", n)
	}
	if top := eval[string](t, tab, `document.querySelector("#tenants tbody tr td:nth-child(4)").textContent`); top != "6" {
		t.Errorf("first tenant row has %s queued, want the most (6)", top)
	}
	if err := chromedp.Do(tab, chromedp.Click("#tenants-all")); err != nil {
		t.Fatal(err)
	}
	if n := eval[int](t, tab, `document.querySelectorAll("#tenants tbody tr").length`); n != 200 {
		t.Errorf("after 'show all': %d rows, want 200", n)
	}
	if n := eval[int](t, tab, `document.querySelectorAll("tr[data-backend]").length`); n != 52 {
		t.Errorf("backend rows: %d, want 50 and 2 draining", n)
	}
	states := eval[[]string](t, tab, `[...document.querySelectorAll('details[data-model="model-0"] tr[data-backend]')].slice(0, 6).map(r => r.dataset.state)`)
	// Out of rotation first (by name), then a breaker trying again, a
	// backend leaving, one ramping up; healthy last.
	want := []string{"ejected", "down", "half-open", "draining", "slow-start", "healthy"}
	if fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("first rows' states %v, want problems first: %v", states, want)
	}
	if !eval[bool](t, tab, `[...document.querySelectorAll("#backends .scroll")].every(s => s.scrollHeight > s.clientHeight)`) {
		t.Error("a 26-row backend table should scroll inside its panel")
	}
	if h := eval[int](t, tab, `document.documentElement.scrollHeight`); h > 4000 {
		t.Errorf("page is %d px tall with 200 tenants shown: tables should scroll, not the page", h)
	}
	if p := problems(); len(p) > 0 {
		t.Fatalf("the page logged errors:\n%v", p)
	}
}
