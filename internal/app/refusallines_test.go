package app

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// The listener's own answers share the bound of the gateway's refusals'
// access lines (log.access_refused_per_second): with the public
// listener's cap at 1, one connection held and the bound at 3 a second,
// ten connections over the cap get their 503 each, three lines are
// written, seven are counted in sluice_log_access_lines_suppressed_total,
// and the next second's first line is preceded by one saying seven were
// held back. Before, each of the ten wrote its line: a flood of refused
// connections wrote the log as fast as they arrived (3,000 lines for
// 3,000 connections measured through the binary).
func TestListenerRefusalLinesBounded(t *testing.T) {
	b := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"admin: {listen: \"off\"}\nserver: {max_connections: 1}\n"+
		"log: {access: true, access_refused_per_second: 3}\nqueue: {enabled: false}\nmodels:\n  - name: m1\n    backends:\n      - url: %s\n", b.URL)
	cfg := loadFile(t, path, src)
	var clock atomic.Int64 // the budget's second is the gateway's clock's
	clock.Store(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC).UnixNano())
	logs := new(logbuf.Buffer)
	a, err := newWithClock(cfg, Source{Path: path}, slog.New(slog.NewJSONHandler(logs, nil)), func() time.Time { return time.Unix(0, clock.Load()) })
	if err != nil {
		t.Fatal(err)
	}
	addr := serveLoopback(t, a)
	const head = "GET /v1/models HTTP/1.1\r\nHost: sluice\r\n\r\n"
	if code, err := dialRaw(t, addr).get(head); err != nil || code != http.StatusOK {
		t.Fatalf("the connection within the cap: %d %v", code, err) // held open (keep-alive) from here
	}
	refuse := func(n int) {
		t.Helper()
		for range n {
			if code, err := dialRaw(t, addr).get(head); err != nil || code != http.StatusServiceUnavailable {
				t.Fatalf("a connection over the cap: %d %v, want 503", code, err)
			}
		}
	}
	lines := func(msg string) int { return strings.Count(logs.String(), `"msg":"`+msg+`"`) }
	refuse(10)
	if n := lines("request refused by the listener"); n != 3 {
		t.Errorf("%d listener lines for 10 refused connections in one second, want 3 (access_refused_per_second)", n)
	}
	if got := counterValue(t, a, "sluice_log_access_lines_suppressed_total"); got != 7 {
		t.Errorf("sluice_log_access_lines_suppressed_total %v, want 7", got)
	}
	clock.Add(int64(time.Second))
	refuse(1)
	if n := lines("request refused by the listener"); n != 4 {
		t.Errorf("%d listener lines after a refusal the next second, want 4", n)
	}
	if !strings.Contains(logs.String(), `"msg":"access lines of refused requests not written","suppressed":7`) {
		t.Errorf("no summary of the 7 lines held back:\n%s", logs)
	}
}

// The admin listener's 503 over admin.max_connections names that setting
// and is logged, with listener=admin and the request id the client got,
// as the public listener's refusals are. Before, its body named
// server.max_connections (an operator raised the wrong cap) and no line
// was written: the id a client quoted was found nowhere.
func TestAdminListenerRefusalNamedAndLogged(t *testing.T) {
	b := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"admin: {max_connections: 1}\n"+
		"log: {access: true}\nqueue: {enabled: false}\nmodels:\n  - name: m1\n    backends:\n      - url: %s\n", b.URL)
	cfg := loadFile(t, path, src)
	logs := new(logbuf.Buffer)
	a, err := New(cfg, Source{Path: path}, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := a.ListenAdmin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveLoopback(t, a)
	const head = "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
	if code, err := dialRaw(t, admin.String()).get(head); err != nil || code != http.StatusOK {
		t.Fatalf("the admin connection within the cap: %d %v", code, err) // held open (keep-alive) from here
	}
	over := dialRaw(t, admin.String())
	if _, err := io.WriteString(over.c, head); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(over.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "(admin.max_connections)") {
		t.Fatalf("over admin.max_connections: %d %s, want a 503 naming admin.max_connections", resp.StatusCode, body)
	}
	id := resp.Header.Get("X-Request-Id")
	want := `"msg":"request refused by the listener","listener":"admin","request_id":"` + id + `"`
	if id == "" || !strings.Contains(logs.String(), want) {
		t.Errorf("no log line for the admin listener's refusal %q:\n%s", id, logs)
	}
}
