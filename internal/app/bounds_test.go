package app

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metricValue is the value of name's one unlabelled sample on admin's
// /metrics; -1 when it is absent.
func metricValue(t *testing.T, admin, name string) float64 {
	t.Helper()
	line := metric(t, admin, name+" ")
	if line == "" {
		return -1
	}
	v, err := strconv.ParseFloat(strings.TrimPrefix(line, name+" "), 64)
	if err != nil {
		t.Fatalf("%s: %q", name, line)
	}
	return v
}

// forwardedChat sends a chat request as the client at addr (through a
// trusted proxy) and returns its status.
func forwardedChat(t *testing.T, host, addr string) int {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+host+"/v1/chat/completions", strings.NewReader(`{"model":"m1","messages":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", addr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Logf("client %s: %d %s", addr, resp.StatusCode, body) // which rule refused
	}
	return resp.StatusCode
}

// The rate limiter's in-process buckets are keyed by what clients choose
// (here client addresses behind a trusted proxy): a flood of more distinct
// addresses than rate_limits.max_keys keeps at most that many buckets,
// every client still gets its answer, and /metrics shows the bound, the
// fill and the charged buckets dropped for room.
func TestRateLimitBucketsBoundedUnderDistinctClients(t *testing.T) {
	b := backend(t, "a")
	host, admin := startWireApp(t, b.URL, "auth: {trusted_proxies: [127.0.0.1]}\n"+
		"rate_limits: {max_keys: 64, per_ip: {requests: \"rate=1r/m burst=5 nodelay\"}}\n")
	const clients = 400
	for i := range clients {
		if st := forwardedChat(t, host, fmt.Sprintf("10.9.%d.%d", i/200, i%200+1)); st != http.StatusOK {
			t.Fatalf("client %d: status %d", i, st)
		}
	}
	if c := metricValue(t, admin, "sluice_ratelimit_buckets_capacity"); c != 64 {
		t.Fatalf("capacity %v, want 64", c)
	}
	if n := metricValue(t, admin, "sluice_ratelimit_buckets"); n < 1 || n > 64 {
		t.Errorf("%v buckets held after %d distinct clients, want 1..64", n, clients)
	}
	// Every bucket is charged for a minute: room for the newer ones came
	// from charged buckets, at least all but the bound's worth.
	if e := metricValue(t, admin, "sluice_ratelimit_buckets_evicted_total"); e < clients-64 {
		t.Errorf("%v charged buckets evicted, want at least %d", e, clients-64)
	}
}

// The forecaster's series table is bounded (forecast.max_series) and
// tenants are named by clients (here client addresses): a crowd of busy
// tenants that filled it must not keep a model whose traffic starts later
// from being forecast. The model takes a tenant's place; /metrics shows
// the fill, the bound and what was turned away.
func TestForecastSeriesKeepRoomForModels(t *testing.T) {
	be := backend(t, "b1")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\nadmin: {listen: \"off\"}\n"+
		"forecast: {enabled: true, snapshot: \"off\", max_series: 4, min_tenant_rate: 0.01}\nmodels:\n"+
		"  - name: m1\n    backends:\n      - url: %[1]s\n  - name: m2\n    backends:\n      - url: %[1]s\n", be.URL)
	t0 := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	a, _, clock, set := clockedApp(t, path, src, t0)
	send := func(model string, client int) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{"model":"`+model+`","messages":[]}`))
		req.Header.Set("Content-Type", "application/json")
		req.RemoteAddr = fmt.Sprintf("10.0.%d.%d:40000", client/250, client%250+1)
		a.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("chat: %d %s", rec.Code, rec.Body)
		}
	}
	scrape := func() string {
		rec := httptest.NewRecorder()
		a.AdminHandler().ServeHTTP(rec, adminRequest(http.MethodGet, "/metrics"))
		return rec.Body.String()
	}
	// Three minutes of 40 distinct clients on m1, each busy enough for a
	// series of its own; m2's traffic starts in the third.
	const clients = 40
	for i := range 3 {
		set(t0.Add(time.Duration(i)*time.Minute + 10*time.Second))
		for c := range clients {
			send("m1", c)
		}
		if i == 2 {
			send("m2", 0)
		}
		set(t0.Add(time.Duration(i+1) * time.Minute))
		a.forecast.advance(clock())
	}
	m := scrape()
	for _, want := range []string{
		`sluice_forecast_series{kind="model"} 2`, `sluice_forecast_series{kind="tenant"} 2`,
		"sluice_forecast_series_limit 4", "sluice_forecast_series_evicted_total 1",
		`sluice_forecast_requests_per_second{horizon="10m",model="m2",stat="mean"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics has no %s:\n%s", want, metricLines(m, "sluice_forecast_series"))
		}
	}
	// Every interval, clients beyond the bound qualified and found no room
	// (those counted: the open interval tallies at most 4 x max_series
	// names without a series).
	if r := metricLines(m, "sluice_forecast_series_refused_total"); r == "" || strings.HasSuffix(r, " 0") {
		t.Errorf("refusals: %q", r)
	}
}

// metricLines are the lines of the exposition m that start with name.
func metricLines(m, name string) string {
	var out []string
	for _, l := range strings.Split(m, "\n") {
		if strings.HasPrefix(l, name) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Backends come and go (discovery, reloads), and sluice_requests_total is
// labelled by backend: the counters of backends that left are deleted when
// the new runtime is swapped in, so the series do not grow with every
// backend ever seen.
func TestRequestSeriesOfRemovedBackendsAreDeleted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	writeConfig(t, path, "m1", backend(t, "b0").URL)
	a := newApp(t, path)
	url, admin := serveApp(t, a)

	const churn = 20
	for i := range churn {
		if i > 0 {
			writeConfig(t, path, "m1", backend(t, fmt.Sprint("b", i)).URL)
			if err := a.Reload(); err != nil {
				t.Fatal(err)
			}
		}
		if code, body := chat(url, "m1"); code != http.StatusOK || !strings.Contains(body, fmt.Sprintf(`"b%d"`, i)) {
			t.Fatalf("after reload %d: %d %s", i, code, body)
		}
	}
	var withBackend []string
	for _, l := range strings.Split(metric(t, admin, "sluice_requests_total{"), "\n") {
		if strings.Contains(l, `backend="127.0.0.1:`) {
			withBackend = append(withBackend, l)
		}
	}
	if len(withBackend) != 1 {
		t.Errorf("%d request series with a backend after %d backends came and went, want the current one's:\n%s",
			len(withBackend), churn, strings.Join(withBackend, "\n"))
	}
}
