package app

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/forecast"
)

// The wire names of /status's forecast, spelled out here rather than
// borrowed from the gateway's types, so a renamed field fails the test
// (docs/STATUS.md documents these).
type wireRates struct {
	Mean float64 `json:"mean"`
	P90  float64 `json:"p90"`
}

type wirePoint struct {
	At       time.Time `json:"at"`
	RPS      float64   `json:"requests_per_second"`
	TPS      float64   `json:"tokens_per_second"`
	Forecast *struct {
		LeadS    float64   `json:"lead_s"`
		Requests wireRates `json:"requests"`
		Tokens   wireRates `json:"tokens"`
	} `json:"forecast"`
}

type wireForecast struct {
	IntervalS float64 `json:"interval_s"`
	LeadS     float64 `json:"lead_s"`
	Models    []struct {
		Model    string     `json:"model"`
		Actual   *wirePoint `json:"actual"`
		Horizons []struct {
			HorizonS float64   `json:"horizon_s"`
			Lead     bool      `json:"lead"`
			Requests wireRates `json:"requests"`
			Tokens   wireRates `json:"tokens"`
		} `json:"horizons"`
		History         []wirePoint `json:"history"`
		DesiredBackends float64     `json:"desired_backends"`
		Backends        int         `json:"backends"`
		UsableBackends  int         `json:"usable_backends"`
	} `json:"models"`
}

func adminGet(t *testing.T, a *App, path string, v any) {
	t.Helper()
	rec := httptest.NewRecorder()
	a.AdminHandler().ServeHTTP(rec, adminRequest(http.MethodGet, path))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, rec.Body)
	}
}

// /status's forecast through a real gateway with forecasting on and the
// test's clock: requests counted per interval become the actual rates,
// each interval is set against what was forecast for it scaling.lead
// before, the history keeps the last 60 intervals, and the desired
// backends are /scaling's.
func TestStatusForecastAgainstActual(t *testing.T) {
	if !config.Default().Forecast.Enabled {
		t.Fatal("forecast.enabled is off by default: docs/STATUS.md says it is on")
	}
	dir := t.TempDir()
	be := backend(t, "b1")
	path := filepath.Join(dir, "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\nadmin: {listen: \"off\"}\n"+
		"forecast: {enabled: true, snapshot: \"off\"}\nmodels:\n  - name: m1\n    backends:\n      - url: %s\n", be.URL)
	t0 := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	a, cfg, clock, set := clockedApp(t, path, src, t0)

	body := `{"model":"m1","max_tokens":16,"messages":[{"role":"user","content":"forecast me"}]}`
	perRequest := admission.EstimateCost(len(body), 16, cfg.Admission.DefaultMaxTokens)
	send := func() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		a.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("chat: %d %s", rec.Code, rec.Body)
		}
	}
	// 65 minutes: three requests a minute, none in the last one; the
	// forecast loop's tick closes each minute.
	const minutes = 65
	for i := range minutes {
		set(t0.Add(time.Duration(i)*time.Minute + 10*time.Second))
		if i < minutes-1 {
			for range 3 {
				send()
			}
		}
		set(t0.Add(time.Duration(i+1) * time.Minute))
		a.forecast.advance(clock())
	}

	var doc struct {
		Forecast *wireForecast `json:"forecast"`
	}
	adminGet(t, a, "/status", &doc)
	fc := doc.Forecast
	if fc == nil {
		t.Fatal("/status has no forecast with forecast.enabled")
	}
	if fc.IntervalS != 60 || fc.LeadS != 180 || len(fc.Models) != 1 || fc.Models[0].Model != "m1" {
		t.Fatalf("forecast interval %v s, lead %v s, models %d: want 60, 180 (the default scaling.lead) and m1", fc.IntervalS, fc.LeadS, len(fc.Models))
	}
	m := fc.Models[0]
	rate := 3.0 / 60
	if len(m.History) != 60 {
		t.Fatalf("history of %d points after %d minutes, want the last 60", len(m.History), minutes)
	}
	for i, p := range m.History {
		at := t0.Add(time.Duration(minutes-60+i) * time.Minute)
		want := rate
		if i == len(m.History)-1 {
			want = 0 // the quiet last minute counts as zero
		}
		if !p.At.Equal(at) || math.Abs(p.RPS-want) > 1e-12 || math.Abs(p.TPS-want*perRequest) > 1e-9 {
			t.Fatalf("history[%d] = %v %v req/s %v tokens/s, want %v %v req/s %v tokens/s", i, p.At, p.RPS, p.TPS, at, want, want*perRequest)
		}
		// Every interval shown was forecast three minutes before it began,
		// from a steady 3 a minute.
		if f := p.Forecast; f == nil || f.LeadS != 180 || math.Abs(f.Requests.Mean-rate) > 0.1*rate || f.Requests.P90 < f.Requests.Mean ||
			math.Abs(f.Tokens.Mean-rate*perRequest) > 0.1*rate*perRequest {
			t.Fatalf("history[%d] forecast %+v: want one made 180 s ahead of about %v req/s, p90 at or above the mean", i, f, rate)
		}
	}
	if m.Actual == nil || !m.Actual.At.Equal(m.History[59].At) || m.Actual.RPS != 0 {
		t.Errorf("actual %+v: want the last closed minute, zero", m.Actual)
	}
	var horizons []float64
	for _, h := range m.Horizons {
		horizons = append(horizons, h.HorizonS)
		if h.Lead != (h.HorizonS == 180) || h.Requests.Mean <= 0 || h.Requests.P90 < h.Requests.Mean || h.Tokens.Mean <= 0 {
			t.Errorf("horizon %+v: want a positive mean, p90 at or above it, lead only on 180 s", h)
		}
	}
	if fmt.Sprint(horizons) != "[180 300 600 1800 3600]" {
		t.Errorf("horizons %v s: want scaling.lead's and the metrics' 5m, 10m, 30m, 60m", horizons)
	}
	var sig struct {
		DesiredBackends float64 `json:"desired_backends"`
		Backends        int     `json:"backends"`
	}
	adminGet(t, a, "/scaling?model=m1", &sig)
	if m.DesiredBackends <= 0 || m.DesiredBackends != sig.DesiredBackends || m.Backends != 1 || m.UsableBackends != 1 {
		t.Errorf("desired backends %v of %d (%d usable): want /scaling's %v (> 0: the forecast is demand) of 1", m.DesiredBackends, m.Backends, m.UsableBackends, sig.DesiredBackends)
	}

	// The default config (no forecast section): forecast is there.
	def := filepath.Join(dir, "default.yaml")
	writeConfig(t, def, "m1", be.URL)
	d := newApp(t, def)
	t.Cleanup(d.release)
	var byDefault map[string]json.RawMessage
	adminGet(t, d, "/status", &byDefault)
	if got := string(byDefault["forecast"]); !strings.Contains(strings.ReplaceAll(got, " ", ""), `"model":"m1"`) {
		t.Errorf("forecast with the default config: %s, want m1's", got)
	}

	// Forecasting off: forecast is null.
	off := filepath.Join(dir, "off.yaml")
	src = fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\nadmin: {listen: \"off\"}\n"+
		"forecast: {enabled: false}\nmodels:\n  - name: m1\n    backends:\n      - url: %s\n", be.URL)
	writeFile(t, off, src)
	b := newApp(t, off)
	t.Cleanup(b.release)
	var raw map[string]json.RawMessage
	adminGet(t, b, "/status", &raw)
	if got := string(raw["forecast"]); got != "null" {
		t.Errorf("forecast with forecasting off: %s, want null", got)
	}
}

// The history's memory is bounded: models beyond the forecaster's
// max_series are not kept, quiet intervals count as zeros, and after a
// pause longer than the history only its last 60 intervals remain, each
// one interval after the other.
func TestArrivalHistoryBounds(t *testing.T) {
	fc, err := forecast.New(forecast.Config{Interval: time.Minute, MaxSeries: 2})
	if err != nil {
		t.Fatal(err)
	}
	h := newArrivalHistory(fc)
	t0 := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	for _, m := range []string{"m1", "m2", "m3"} {
		h.observe(t0.Add(5*time.Second), m, 1, 30)
	}
	h.Advance(t0.Add(3 * time.Minute))
	got := h.ModelForecast("m1", t0.Add(3*time.Minute), 0).History
	if len(got) != 3 || got[0].RequestsPerSecond != 1.0/60 || got[0].TokensPerSecond != 0.5 || got[1].RequestsPerSecond != 0 || !got[2].At.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("m1 history %+v: want 1/60 req/s at 10:00, then zeros to 10:02", got)
	}
	if h.ModelForecast("m3", t0, 0).History != nil {
		t.Error("a third model was kept beyond max_series 2")
	}
	end := t0.Add(503 * time.Minute)
	h.Advance(end)
	got = h.ModelForecast("m1", end, 0).History
	if len(got) != historyPoints {
		t.Fatalf("%d points after a 500-interval pause, want %d", len(got), historyPoints)
	}
	for i, p := range got {
		if want := end.Add(time.Duration(i-historyPoints) * time.Minute); !p.At.Equal(want) || p.RequestsPerSecond != 0 {
			t.Fatalf("point %d at %v (%v req/s), want %v and 0", i, p.At, p.RequestsPerSecond, want)
		}
	}
}

// Live arrivals from many goroutines, across interval boundaries and
// while the forecast loop's tick closes intervals too, are each counted
// once in /status's history: its points add up to exactly the arrivals
// (nothing lost or counted twice when an arrival and a tick close an
// interval at once).
func TestArrivalHistoryConcurrentAcrossBoundary(t *testing.T) {
	cfg := config.Default().Forecast
	cfg.Snapshot = "off"
	r, err := newForecastRun(cfg, "", time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	iv := r.fc.Config().Interval
	const workers, each = 8, 2000
	step := 2 * iv / each // each worker crosses two boundaries
	t0 := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	r.advance(t0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				r.Arrival(t0.Add(time.Duration(j)*step), "m1", fmt.Sprintf("tenant-%d", w%2), 3)
			}
		}()
	}
	wg.Add(1)
	go func() { // the forecast loop's ticks
		defer wg.Done()
		for s := 1; s <= 2; s++ {
			r.advance(t0.Add(time.Duration(s) * iv))
		}
	}()
	wg.Wait()
	end := t0.Add(4 * iv)
	r.advance(end)
	var requests, tokens float64
	for _, p := range r.hist.ModelForecast("m1", end, 0).History {
		requests += p.RequestsPerSecond * iv.Seconds()
		tokens += p.TokensPerSecond * iv.Seconds()
	}
	if math.Round(requests) != workers*each || math.Round(tokens) != 3*workers*each {
		t.Errorf("history counted %v requests and %v tokens, want %d and %d", requests, tokens, workers*each, 3*workers*each)
	}
	// The forecaster counted them too: the model and both busy tenants
	// have series.
	if got := len(r.fc.Keys()); got != 3 {
		t.Errorf("forecaster series %v, want m1 and its two tenants", r.fc.Keys())
	}
}

// clockedApp writes src to path and builds the app from it (not running),
// with a clock the test sets: it starts at t0.
func clockedApp(t *testing.T, path, src string, t0 time.Time) (a *App, cfg *config.Config, clock func() time.Time, set func(time.Time)) {
	t.Helper()
	cfg = loadFile(t, path, src)
	var mu sync.Mutex
	now := t0
	clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set = func(at time.Time) { mu.Lock(); now = at; mu.Unlock() }
	var err error
	a, err = newWithClock(cfg, Source{Path: path}, slog.New(slog.NewTextHandler(io.Discard, nil)), clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.release)
	return a, cfg, clock, set
}
