package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/netguard"
)

func writeAdminConfig(t *testing.T, backend, adminLine string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\nadmin: %s\nmodels:\n  - name: m\n    backends:\n      - url: %s\n", adminLine, backend)
	writeFile(t, path, src)
	return path
}

// The app serves the API and the admin endpoints on two listeners, a
// worker's gate reaches /spare with the admin token (and not without it),
// and shutdown closes both listeners.
func TestAdminListenerServesGateAndStops(t *testing.T) {
	be := backend(t, "a")
	url, admin, stop, done := startAppAdmin(t, writeAdminConfig(t, be.URL, "{token: adm1n, pprof: true}"))

	if code, _, _ := do(t, http.MethodGet, url+"/metrics", "", nil); code != http.StatusNotFound {
		t.Fatalf("public /metrics: %d, want 404", code)
	}
	if code, _, _ := do(t, http.MethodGet, admin+"/metrics", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("admin /metrics without the token: %d, want 401", code)
	}
	for _, path := range []string{"/metrics", "/status", "/spare?model=m", "/debug/pprof/"} {
		if code, _, b := do(t, http.MethodGet, admin+path, "", nil, "Authorization", "Bearer adm1n"); code != 200 {
			t.Fatalf("admin %s with the token: %d %s", path, code, b)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	defer cancel()
	if err := (&jobs.HTTPGate{Admin: admin, Token: "adm1n"}).Wait(ctx, "m"); err != nil {
		t.Fatalf("gate with the admin token: %v", err)
	}
	// Without the token the gate never opens: a worker then takes no jobs.
	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelShort()
	if err := (&jobs.HTTPGate{Admin: admin}).Wait(short, "m"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("gate without the token: %v, want it to keep waiting", err)
	}

	stop()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, u := range []string{url, admin} {
		c, err := net.Dial("tcp", strings.TrimPrefix(u, "http://"))
		if err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after shutdown", u)
		}
	}
}

// An admin address that cannot be bound stops the start, as a busy public
// port does; "off" runs without an admin listener.
func TestAdminListenBusyFailsAndOffRuns(t *testing.T) {
	be := backend(t, "a")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, c := range []struct {
		admin   string
		wantErr bool
	}{{"{listen: " + busy.Addr().String() + "}", true}, {"{listen: \"off\"}", false}} {
		cfg, err := config.Load(writeAdminConfig(t, be.URL, c.admin))
		if err != nil {
			t.Fatal(err)
		}
		a, err := New(cfg, Source{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if addr, err := a.ListenAdmin(""); (err != nil) != c.wantErr || (!c.wantErr && addr != nil) {
			t.Fatalf("admin %s: ListenAdmin = %v, %v", c.admin, addr, err)
		}
		addr, cancel, done := runLoopback(t, a)
		if c.wantErr {
			if err := <-done; err == nil || !strings.Contains(err.Error(), "admin listen") {
				t.Fatalf("busy admin port: Run = %v", err)
			}
			cancel()
			continue
		}
		if code, _ := chat("http://"+addr, "m"); code != 200 {
			t.Fatalf("admin off: chat %d", code)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// The running gateway refuses a request with both Content-Length and
// Transfer-Encoding (400, connection closed) before any backend sees it;
// net/http alone would have served it as chunked.
func TestGatewayRefusesAmbiguousFraming(t *testing.T) {
	be, calls := countingBackend(t)
	url, _, stop, done := startAppAdmin(t, writeAdminConfig(t, be.URL, "{}"))
	defer func() { stop(); <-done }()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	body := `{"model":"m","messages":[]}`
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(b), "ambiguous_framing") {
		t.Fatalf("status %d %s", resp.StatusCode, b)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed after the refusal: %v", err)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("backend calls %d, want 0", n)
	}
}

// The admin listener is capped as the public one is: with
// admin.max_connections 2, a third connection while two are open gets
// the refusal tier's 503, not a slot (it had none: every connection a
// peer opened was served, each held up to ReadHeaderTimeout silent),
// counted in sluice_connections_refused_total with listener="admin" (it
// was counted nowhere) and not as the public listener's.
func TestAdminListenerConnectionCap(t *testing.T) {
	be := backend(t, "a")
	a := newApp(t, writeAdminConfig(t, be.URL, "{max_connections: 2}"))
	reg := a.deps.Registry.(*prometheus.Registry)
	_, admin, stop, done := runApp(t, a)
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	addr := strings.TrimPrefix(admin, "http://")
	dial := func() *rawConn { return dialRaw(t, addr) }
	get := func(cl *rawConn) (int, error) { return cl.get("GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") }
	// Two open connections (kept alive after their answers: the admin
	// server's idle timeout is 120 s).
	for _, cl := range []*rawConn{dial(), dial()} {
		if code, err := get(cl); err != nil || code != http.StatusOK {
			t.Fatalf("within the cap: %d %v", code, err)
		}
	}
	if code, err := get(dial()); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("a third admin connection: %d %v, want the refusal tier's 503 (admin.max_connections is 2)", code, err)
	}
	if got := refusedTotal(t, reg, netguard.ListenerAdmin, netguard.RefusedMaxConnections); got != 1 {
		t.Errorf("admin refusals counted %v, want 1", got)
	}
	if got := refusedTotal(t, reg, netguard.ListenerPublic, netguard.RefusedMaxConnections); got != 0 {
		t.Errorf("public refusals counted %v, want 0: the refusal was the admin listener's", got)
	}
}

// A reload applies admin.max_connections to the listener serving: raised
// from 2 to 3, a third connection is served; lowered to 1, the three open
// ones are not cut (each still answers) and new ones are refused until
// the open ones are under the cap. Before, the reload warned "needs a
// restart" and the cap stayed 2.
func TestAdminCapFollowsReload(t *testing.T) {
	be := backend(t, "a")
	path := writeAdminConfig(t, be.URL, "{max_connections: 2}")
	a := newApp(t, path)
	_, admin, stop, done := runApp(t, a)
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	reload := func(adminLine string) {
		t.Helper()
		src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\nadmin: %s\nmodels:\n  - name: m\n    backends:\n      - url: %s\n", adminLine, be.URL)
		writeFile(t, path, src)
		if err := a.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	addr := strings.TrimPrefix(admin, "http://")
	get := func(cl *rawConn) int {
		code, err := cl.get("GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	open := []*rawConn{dialRaw(t, addr), dialRaw(t, addr)}
	for _, cl := range open {
		if code := get(cl); code != http.StatusOK {
			t.Fatalf("within the cap of 2: %d", code)
		}
	}
	// A connection over the cap: answered 503 by the refusal tier, or
	// closed at accept while the tier (as small as the cap) still drains
	// an earlier one. Closed after, so that it leaves the tier.
	refused := func() bool {
		cl := dialRaw(t, addr)
		defer cl.c.Close()
		code, err := cl.get("GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		return err != nil || code == http.StatusServiceUnavailable
	}
	if !refused() {
		t.Fatal("a third connection under the cap of 2 was served")
	}
	reload("{max_connections: 3}")
	third := dialRaw(t, addr)
	if code := get(third); code != http.StatusOK {
		t.Fatalf("a third connection after a reload raised the cap to 3: %d, want 200", code)
	}
	open = append(open, third)
	reload("{max_connections: 1}")
	for i, cl := range open {
		if code := get(cl); code != http.StatusOK {
			t.Fatalf("open connection %d after the cap was lowered to 1: %d, want 200 (not cut)", i, code)
		}
	}
	if !refused() {
		t.Fatal("a new connection with 3 open over a cap of 1 was served")
	}
	for _, cl := range open {
		cl.c.Close()
	}
	// The server sees the closes on its own time: a new connection is
	// served once it has.
	eventually(t, "a connection served once the open ones closed", func() bool {
		cl := dialRaw(t, addr)
		defer cl.c.Close()
		code, err := cl.get("GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		return err == nil && code == http.StatusOK
	})
}

// refusedTotal is sluice_connections_refused_total{listener, reason}.
func refusedTotal(t *testing.T, reg prometheus.Gatherer, listener, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_connections_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["listener"] == listener && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("sluice_connections_refused_total{listener=%q,reason=%q} not gathered", listener, reason)
	return 0
}
