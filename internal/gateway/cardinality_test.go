package gateway

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/telemetry"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

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
	logs := &logbuf.Buffer{}
	log, err := telemetry.NewLogger(logs, "info")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: time.Now, Rand: routing.NewRand(1), Registry: reg}
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := New(rt, Options{Logger: log, Registry: reg, Now: time.Now})
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); deps.Transport.CloseIdle(); rt.Retire(nil) })

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
