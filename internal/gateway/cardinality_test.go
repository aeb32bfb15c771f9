package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluice-gw/sluice/internal/telemetry"
)

// A backend answering a different unregistered status on every request
// (419, 420, 427, ...: 70 of them) adds no series past the classes:
// sluice_requests_total keeps the registered codes and folds the rest into
// "2xx", "3xx", "4xx", "5xx" and "other". Before, each code was a series
// per model and backend for the life of the process (900 possible).
func TestRequestSeriesFoldUnregisteredBackendStatuses(t *testing.T) {
	var odd []int
	for c := 400; c < 500; c++ { // a 4xx is relayed as it is, and is no failure of the backend
		if http.StatusText(c) == "" && c != 499 {
			odd = append(odd, c)
		}
	}
	var n atomic.Int32
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(odd[i%len(odd)])
		fmt.Fprintf(w, `{"error":{"message":"odd %d","type":"x","code":null}}`, i)
	}))
	t.Cleanup(backend.Close)
	cfg := testConfig(backend.URL)
	cfg.Health.MaxFails = 0
	srv, gw := startGateway(t, cfg)
	for range odd {
		readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody))
	}
	codes := requestCodes(t, adminServer(t, gw).URL)
	if len(codes) != 1 {
		t.Fatalf("%d distinct backend statuses made %d series of sluice_requests_total: %v", len(odd), len(codes), codes)
	}
	total := 0.0
	for c, v := range codes {
		if c != "4xx" {
			t.Errorf("code %q: want only 4xx (all: %v)", c, codes)
		}
		total += v
	}
	if int(total) != len(odd) {
		t.Errorf("counted %v requests, want %d", total, len(odd))
	}
}

// The code label keeps registered statuses and the gateway's own, folds
// the rest of 100-599 into its class and anything else into "other".
func TestCodeLabels(t *testing.T) {
	for status, want := range map[int]string{200: "200", 429: "429", 499: "499", 0: "0", 218: "2xx", 599: "5xx", 600: "other", 999: "other", 99: "other"} {
		if got := codeLabel(codeOf(status)); got != want {
			t.Errorf("code label of %d = %q, want %q", status, got, want)
		}
	}
}

// requestCodes scrapes the admin listener's /metrics and sums
// sluice_requests_total by its code label.
func requestCodes(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "sluice_requests_total{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `code="`)
		code, _, _ := strings.Cut(rest, `"`)
		var v float64
		fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
		out[code] += v
	}
	return out
}

// Client-chosen strings reach the access log escaped and cut to
// telemetry.MaxLogValue: a 200 KiB model name, and one carrying a newline,
// a forged JSON line and an ANSI escape, each make exactly one line of a
// bounded length, and the forged line is not a line. Before, the access
// line copied the whole name (as long as the body allows, 8 MiB by
// default).
func TestAccessLogClipsAndEscapesClientStrings(t *testing.T) {
	ob := newOKBackend(t)
	cfg := testConfig(ob.URL)
	cfg.Log.Access = true
	srv, _, logs := loggedGateway(t, cfg)

	long := strings.Repeat("m", 200<<10)
	forged := "m1\n{\"level\":\"ERROR\",\"msg\":\"forged\"}\x1b[31m"
	for _, model := range []string{long, forged, "m1"} {
		b, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": "hi"}}})
		readAll(t, post(t, srv.URL+"/v1/chat/completions", string(b)))
	}
	lines := strings.Split(strings.TrimSuffix(logs.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d log lines for 3 requests (a forged line?):\n%.2000s", len(lines), logs.String())
	}
	for i, l := range lines {
		if len(l) > 2*telemetry.MaxLogValue+1024 {
			t.Errorf("line %d is %d bytes", i, len(l))
		}
		if strings.ContainsAny(l, "\r\x1b") {
			t.Errorf("line %d holds a raw control character: %q", i, l)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("line %d is not one JSON object: %v", i, err)
		}
		if rec["msg"] != "request" {
			t.Errorf("line %d: msg %v", i, rec["msg"])
		}
	}
	if !strings.Contains(lines[0], "…[+") {
		t.Errorf("the cut model name has no marker: %.200s", lines[0])
	}
}
