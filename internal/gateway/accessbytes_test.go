package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/telemetry"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// accessLines are the "request" lines of logs, decoded.
func accessLines(t *testing.T, logs *logbuf.Buffer) []map[string]any {
	t.Helper()
	return logLines(t, logs, "request")
}

// logLines decodes the JSON log lines in logs whose msg is msg.
func logLines(t *testing.T, logs *logbuf.Buffer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if l == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line is not JSON: %v: %.300s", err, l)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// Every access line says how many body bytes its client was written
// (nginx's $body_bytes_sent, Envoy's %BYTES_SENT%): an answer relayed
// whole, a stream, an error the gateway wrote, a route outside the chain.
// The line had no byte count at all.
func TestAccessLineCarriesBytesSent(t *testing.T) {
	ob := newOKBackend(t)
	cfg := testConfig(ob.URL)
	cfg.Log.Access = true
	srv, _, logs := loggedGateway(t, cfg)

	var got []int
	for _, req := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/chat/completions", `{"model":"nosuch","messages":[{"role":"user","content":"hi"}]}`}, // 404 from the chain
		{"/v1/nothing", `{}`}, // an unknown URL: logRoute
	} {
		got = append(got, len(readAll(t, post(t, srv.URL+req.path, req.body))))
	}
	lines := accessLines(t, logs)
	if len(lines) != len(got) {
		t.Fatalf("%d access lines for %d requests:\n%s", len(lines), len(got), logs.String())
	}
	for i, l := range lines {
		sent, ok := l["bytes_sent"].(float64)
		if !ok || int(sent) != got[i] || got[i] == 0 {
			t.Errorf("request %d (%v %v): bytes_sent %v, the client read %d bytes", i, l["path"], l["status"], l["bytes_sent"], got[i])
		}
	}
}

// readaheadLoggedGateway is readaheadGateway with the gateway's JSON log
// in a buffer.
func readaheadLoggedGateway(t *testing.T, cfg *config.Config) (string, *Gateway, *logbuf.Buffer) {
	t.Helper()
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
	srv := httptest.NewUnstartedServer(gw)
	srv.Listener = smallSendBuffer{srv.Listener}
	srv.Start()
	t.Cleanup(func() { srv.Close(); deps.Transport.CloseIdle(); rt.Retire(nil) })
	return srv.URL, gw, logs
}

// An answer read ahead of a slow client is logged once the client has it,
// with the bytes it got: the line used to be written as soon as the
// backend finished, while the client still had most of the answer to
// read, with a duration that ended there (and no byte count), so a slow
// reader's line looked like a fast, whole answer.
func TestReadaheadAccessLineWaitsForTheLastByte(t *testing.T) {
	be, beURL := newBigBackend(t, 1<<20, false)
	cfg := testConfig(beURL)
	cfg.Log.Access = true
	cfg.Server.ResponseReadahead = 2 << 20
	url, gw, logs := readaheadLoggedGateway(t, cfg)

	resp := unreadResponse(t, url+"/v1/chat/completions", sampledBody)
	if cancelled := backendEnded(t, be); cancelled {
		t.Fatal("the backend's answer was cut")
	}
	pool := gw.Runtime().Pools["m1"]
	eventually(t, "the backend slot and the admission slot released", func() bool {
		return pool.Backends[0].Inflight() == 0 && pool.queue.Stats().InUse == 0
	})
	// The client has read nothing of 1 MiB: the answer is not over.
	if lines := accessLines(t, logs); len(lines) != 0 {
		t.Fatalf("access line written before the client had the answer: %v", lines[0])
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(body, be.body) {
		t.Fatalf("the client got %d bytes (%v), want %d", len(body), err, len(be.body))
	}
	var line map[string]any
	eventually(t, "the access line", func() bool {
		lines := accessLines(t, logs)
		if len(lines) == 1 {
			line = lines[0]
		}
		return line != nil
	})
	if sent, _ := line["bytes_sent"].(float64); int(sent) != len(body) {
		t.Fatalf("bytes_sent %v, the client read %d", line["bytes_sent"], len(body))
	}
	if line["status"] != float64(http.StatusOK) {
		t.Fatalf("status %v", line["status"])
	}
}

// A flood of requests the gateway refuses itself (here bad JSON, 400) no
// longer writes one access line each without bound: each second the first
// log.access_refused_per_second lines are written, the rest counted in
// sluice_log_access_lines_suppressed_total and summed up in one line once
// the next second starts. Lines of requests a backend answered are never
// held back. The old code wrote all 20 refusals' lines (a bound existed
// nowhere: 18,700 bad requests a second wrote 6 MB/s of log).
func TestRefusalAccessLinesAreBoundedPerSecond(t *testing.T) {
	ob := newOKBackend(t)
	cfg := testConfig(ob.URL)
	cfg.Log.Access = true
	cfg.Log.AccessRefusedPerSecond = 5
	logs := &logbuf.Buffer{}
	log, err := telemetry.NewLogger(logs, "info")
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64 // the gateway's clock: t0 plus what the test adds
	t0 := time.Now()
	now := func() time.Time { return t0.Add(time.Duration(clock.Load())) }
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: time.Now, Rand: routing.NewRand(1), Registry: reg}
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(rt, Options{Logger: log, Registry: reg, Now: now}))
	t.Cleanup(func() { srv.Close(); deps.Transport.CloseIdle(); rt.Retire(nil) })

	const good = `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`
	for range 20 {
		readAll(t, post(t, srv.URL+"/v1/chat/completions", `{"model":`))
	}
	readAll(t, post(t, srv.URL+"/v1/chat/completions", good))
	readAll(t, post(t, srv.URL+"/v1/nothing", `{}`)) // a route outside the chain: the same budget
	byStatus := map[float64]int{}
	for _, l := range accessLines(t, logs) {
		byStatus[l["status"].(float64)]++
	}
	if byStatus[400] != 5 || byStatus[404] != 0 || byStatus[200] != 1 {
		t.Fatalf("access lines by status %v, want 5 of the 400s, none of the 404, the 200", byStatus)
	}
	if n := metricValue(t, reg, "sluice_log_access_lines_suppressed_total"); n != 16 {
		t.Fatalf("suppressed counted %v, want 16", n)
	}
	if strings.Contains(logs.String(), "not written") {
		t.Fatal("a summary line within the second that held lines back")
	}

	clock.Add(int64(time.Second))
	readAll(t, post(t, srv.URL+"/v1/chat/completions", `{"model":`))
	var summary map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(l, "access lines of refused requests not written") {
			if err := json.Unmarshal([]byte(l), &summary); err != nil {
				t.Fatal(err)
			}
		}
	}
	if summary == nil || summary["suppressed"] != float64(16) || summary["level"] != "WARN" {
		t.Fatalf("summary line %v, want WARN with suppressed 16:\n%s", summary, logs.String())
	}
	if n := len(accessLines(t, logs)); n != 7 {
		t.Fatalf("%d access lines after the next second's refusal, want 7", n)
	}
}

// A backend that cannot be reached is answered 502 upstream_unreachable,
// a code alone: the access line now carries why (connection refused, no
// such host, a timeout), which was nowhere in the log, so an operator
// could not tell a dead process from a wrong address. The cause is a few
// stable words (it was Go's text: "cannot connect to backend: dial tcp
// 127.0.0.1:PORT: connect: connection refused"), Go's text in detail. The
// backend URL's password stays out of both, with either upstream client.
func TestUnreachableBackendCauseIsInTheAccessLine(t *testing.T) {
	for _, client := range []string{config.UpstreamLean, config.UpstreamNetHTTP} {
		t.Run(client, func(t *testing.T) {
			dead := strings.Replace(closedURL(t), "http://", "http://user:URLPASSWORD@", 1)
			cfg := testConfig(dead)
			cfg.Log.Access = true
			cfg.UpstreamClient = client
			srv, _, logs := loggedGateway(t, cfg)
			resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`)
			readAll(t, resp)
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("status %d, want 502", resp.StatusCode)
			}
			lines := accessLines(t, logs)
			if len(lines) != 1 {
				t.Fatalf("%d access lines:\n%s", len(lines), logs.String())
			}
			cause, _ := lines[0]["cause"].(string)
			if lines[0]["error"] != "upstream_unreachable" || cause != "connection refused" {
				t.Fatalf("access line error %v, cause %q: want upstream_unreachable and the dial's reason alone", lines[0]["error"], cause)
			}
			if detail, _ := lines[0]["detail"].(string); !strings.Contains(detail, "connect: connection refused") {
				t.Fatalf("access line detail %q: want Go's text", detail)
			}
			if strings.Contains(logs.String(), "URLPASSWORD") {
				t.Fatalf("the backend URL's password is in the log:\n%s", logs.String())
			}
		})
	}
}
