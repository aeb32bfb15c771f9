package app

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// heldStream is a backend that sends one event, then holds the stream
// open until release is closed.
func heldStream(t *testing.T) (srv *httptest.Server, release chan struct{}) {
	release = make(chan struct{})
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"part\":1}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
			io.WriteString(w, "data: {\"part\":2}\n\ndata: [DONE]\n\n")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	return srv, release
}

// writeTargets replaces the targets file by rename, as a deploy tool would.
func writeTargets(t *testing.T, path string, urls ...string) {
	t.Helper()
	q := make([]string, len(urls))
	for i, u := range urls {
		q[i] = fmt.Sprintf("%q", u)
	}
	writeAtomic(t, path, `[{"targets": [`+strings.Join(q, ", ")+`]}]`)
}

func writeAtomic(t *testing.T, path, src string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, src)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// startDiscoveryApp serves model m1 from the targets file only.
func startDiscoveryApp(t *testing.T, targets, grace string) (a *App, url string) {
	t.Helper()
	return startDiscoveryAppWith(t, targets, "shutdown_grace: "+grace+"\n")
}

// startDiscoveryAppWith is startDiscoveryApp with top-level keys (lines).
func startDiscoveryAppWith(t *testing.T, targets, keys string) (a *App, url string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\n" + keys +
		"models:\n  - name: m1\n    policy: round_robin\n    discovery:\n      - type: file\n        path: " + targets + "\n"
	writeFile(t, path, src)
	a = newApp(t, path)
	if _, err := a.ListenAdmin("127.0.0.1:0"); err != nil { // not the default 9091: another process may hold it
		t.Fatal(err)
	}
	return a, "http://" + serveLoopback(t, a)
}

// poolURLs are m1's backends in the runtime serving now.
func poolURLs(a *App) []string {
	var out []string
	for _, be := range a.gw.Runtime().Pools["m1"].Backends {
		out = append(out, be.Spec().URL)
	}
	return out
}

func samePool(a *App, urls ...string) func() bool {
	return func() bool { return strings.Join(poolURLs(a), ",") == strings.Join(urls, ",") }
}

func backendOf(a *App, url string) *endpoint.Backend {
	for _, be := range a.gw.Runtime().Pools["m1"].Backends {
		if be.Spec().URL == url {
			return be
		}
	}
	return nil
}

// A stream in flight on a backend the targets file drops runs to its end;
// new requests go to the backends listed now; a backend that stays keeps
// its state; a new one slow-starts; an invalid file keeps the last set.
func TestDiscoveredBackendRemovedWhileStreaming(t *testing.T) {
	held, release := heldStream(t)
	b, c := backend(t, "b"), backend(t, "c")
	targets := filepath.Join(t.TempDir(), "targets.json")
	writeTargets(t, targets, held.URL)
	a, url := startDiscoveryApp(t, targets, "30s")
	rd := streamOnHeld(t, a, url, held.URL)

	writeTargets(t, targets, b.URL)
	eventually(t, "the pool to be b only", samePool(a, b.URL))
	if code, body := chat(url, "m1"); code != 200 || !strings.Contains(body, `"b"`) {
		t.Fatalf("after removal: %d %s", code, body)
	}
	if n := gaugeValue(t, a, "sluice_backends_draining"); n != 1 {
		t.Errorf("sluice_backends_draining = %v while the held stream runs, want 1", n)
	}
	if st := adminStatus(t, a); !strings.Contains(st, `"draining": 1`) {
		t.Errorf("/status does not show the draining backend: %s", st)
	}
	if f := backendOf(a, b.URL).RampFactor(); f >= 1 {
		t.Errorf("b joined a running pool at full share (ramp %v), want a slow start", f)
	}

	close(release)
	rest, _ := io.ReadAll(rd)
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("stream cut by its backend's removal: %q", rest)
	}
	eventually(t, "the drain to end", func() bool { return gaugeValue(t, a, "sluice_backends_draining") == 0 })

	kept := backendOf(a, b.URL)
	writeTargets(t, targets, b.URL, c.URL)
	eventually(t, "c to join", samePool(a, b.URL, c.URL))
	if backendOf(a, b.URL) != kept {
		t.Error("b, listed again, was rebuilt: its health, breaker and latency state are lost")
	}

	// An invalid file: the last set stands, a failure is counted.
	writeAtomic(t, targets, `[{"targets": ["no-port"]}]`)
	eventually(t, "the failure counted", func() bool {
		return counterValue(t, a, "sluice_discovery_failures_total") >= 1
	})
	if !samePool(a, b.URL, c.URL)() {
		t.Fatalf("an invalid targets file changed the pool: %v", poolURLs(a))
	}
	st := adminStatus(t, a)
	if !strings.Contains(st, `"slow_start"`) {
		t.Errorf("/status shows no slow_start: %s", st)
	}
}

// A stream on a removed backend runs on past shutdown_grace (200 ms here,
// the stream another 1 s after the removal): only its own bounds end it, as Envoy
// drains a removed host. Before, the drain cut it at shutdown_grace (30 s
// by default): an error event mid-stream while the backend was answering.
func TestRemovedBackendStreamOutlivesShutdownGrace(t *testing.T) {
	release := make(chan struct{})
	paced := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"part\":1}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		// The rest of the stream, longer than the grace: a backend
		// generating, not a wait of the test's.
		for i := 2; i <= 11; i++ {
			time.Sleep(100 * time.Millisecond)
			fmt.Fprintf(w, "data: {\"part\":%d}\n\n", i)
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(paced.Close)
	b := backend(t, "b")
	targets := filepath.Join(t.TempDir(), "targets.json")
	writeTargets(t, targets, paced.URL)
	a, url := startDiscoveryAppWith(t, targets, "shutdown_grace: 200ms\n")
	rd := streamOnHeld(t, a, url, paced.URL)
	gone := backendOf(a, paced.URL)
	writeTargets(t, targets, b.URL)
	eventually(t, "the pool to be b only", samePool(a, b.URL))
	close(release) // the drain's timer runs from the removal, before this
	rest, _ := io.ReadAll(rd)
	if !strings.Contains(string(rest), `{"part":11}`) || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("stream on the removed backend cut at shutdown_grace: %q", rest)
	}
	eventually(t, "the drain to end with the stream", func() bool {
		return gone.Context().Err() != nil && gone.Inflight() == 0
	})
}

// A stream on a removed backend that never ends is cut by its own bound
// (timeouts.total, 1 s here), not before, and the drain ends with it.
func TestRemovedBackendDrainEndsAtTheRequestsBound(t *testing.T) {
	held, _ := heldStream(t)
	b := backend(t, "b")
	targets := filepath.Join(t.TempDir(), "targets.yaml")
	writeTargets(t, targets, held.URL)
	a, url := startDiscoveryAppWith(t, targets, "shutdown_grace: 100ms\ntimeouts: {total: 1s}\n")
	started := time.Now()
	rd := streamOnHeld(t, a, url, held.URL)
	gone := a.gw.Runtime().Pools["m1"].Backends[0]
	writeTargets(t, targets, b.URL)
	// The stream ends (cut) without the backend ever finishing it, and
	// not before its total: the grace (100 ms) does not end it.
	rest, _ := io.ReadAll(rd)
	if strings.Contains(string(rest), "[DONE]") {
		t.Fatalf("the held stream finished: %q", rest)
	}
	if d := time.Since(started); d < time.Second {
		t.Fatalf("the held stream was cut %v after its start, within its 1s total: %q", d, rest)
	}
	// Retire cancels the attempts (their hooks) before the backend's
	// context: the request's end (Inflight 0) may be seen before
	// Context is done, so the wait is for both.
	eventually(t, "the removed backend retired and its requests ended", func() bool {
		return gone.Context().Err() != nil && gone.Inflight() == 0
	})
}

func adminStatus(t *testing.T, a *App) string {
	t.Helper()
	rec := httptest.NewRecorder()
	a.AdminHandler().ServeHTTP(rec, adminRequest("GET", "/status"))
	var v any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("/status: %v: %s", err, rec.Body.String())
	}
	return rec.Body.String()
}

func gaugeValue(t *testing.T, a *App, name string) float64 {
	t.Helper()
	mfs, err := a.deps.Registry.(*prometheus.Registry).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

func counterValue(t *testing.T, a *App, name string) float64 {
	t.Helper()
	mfs, err := a.deps.Registry.(*prometheus.Registry).Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// streamOnHeld waits until the pool is the held backend alone, starts a
// stream on it and reads its first event; the stream stays open (closed
// at the test's end).
func streamOnHeld(t *testing.T, a *App, url, heldURL string) *bufio.Reader {
	t.Helper()
	eventually(t, "the held backend discovered", samePool(a, heldURL))
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m1","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	rd := bufio.NewReader(resp.Body)
	if line, _ := rd.ReadString('\n'); line != "data: {\"part\":1}\n" {
		t.Fatalf("first event %q", line)
	}
	return rd
}

// A backend that comes back while it drains (an endpoint that flapped)
// is the same backend again: the stream running on it is not cut when
// the drain's grace ends, its max_concurrency counts that stream, and its
// health and breaker state carry over.
func TestBackendBackWhileDrainingKeepsItsStream(t *testing.T) {
	held, release := heldStream(t)
	b := backend(t, "b")
	targets := filepath.Join(t.TempDir(), "targets.json")
	writeTargets(t, targets, held.URL)
	a, url := startDiscoveryApp(t, targets, "300ms")
	rd := streamOnHeld(t, a, url, held.URL)
	gone := backendOf(a, held.URL)

	writeTargets(t, targets, b.URL)
	eventually(t, "the pool to be b only", samePool(a, b.URL))
	writeTargets(t, targets, held.URL, b.URL)
	eventually(t, "the held backend back", samePool(a, held.URL, b.URL))
	if backendOf(a, held.URL) != gone {
		t.Fatal("the backend back while draining was built anew beside its draining self: " +
			"its stream is cut at the grace's end and its max_concurrency counts double")
	}
	if n := gone.Inflight(); n != 1 {
		t.Errorf("the backend back counts %d requests in flight, want its stream's 1", n)
	}
	// The drain ends without retiring it (waited for, not slept: the
	// grace is 300 ms, and a retirement would have cut the stream).
	eventually(t, "the drain to end", func() bool {
		a.reloadMu.Lock()
		defer a.reloadMu.Unlock()
		return len(a.drains.running) == 0
	})
	if gone.Context().Err() != nil {
		t.Fatal("the backend back in the pool was retired")
	}
	close(release)
	rest, _ := io.ReadAll(rd)
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("stream on the backend back in the pool was cut: %q", rest)
	}
	if code, body := chat(url, "m1"); code != 200 {
		t.Fatalf("after the flap: %d %s", code, body)
	}
}

// A targets file swapping 25 backends for 25 others: the pool-changed
// line counts both sides and names only the first ten of each, the rest
// as "+15 more" (it listed all 50).
func TestPoolChangeLogIsBounded(t *testing.T) {
	dir := t.TempDir()
	targets := filepath.Join(dir, "targets.json")
	hosts := func(first int) []string {
		var out []string
		for i := range 25 {
			out = append(out, fmt.Sprintf("http://10.0.0.%d:8000", first+i))
		}
		return out
	}
	writeTargets(t, targets, hosts(100)...)
	path := filepath.Join(dir, "sluice.yaml")
	writeFile(t, path, "listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\n"+
		"models:\n  - name: m1\n    discovery:\n      - type: file\n        path: "+targets+"\n")
	a, _, logs := startLoggedApp(t, path)
	eventually(t, "the first 25", func() bool { return len(poolURLs(a)) == 25 })
	writeTargets(t, targets, hosts(200)...)
	first := func(first int) string {
		var names []string
		for _, u := range hosts(first)[:10] {
			names = append(names, strings.TrimPrefix(u, "http://"))
		}
		return strings.Join(names, " ")
	}
	waitLog(t, logs, `msg="discovery: pool changed" model=m1 added="[`+first(200)+` +15 more]" added_count=25 `+
		`removed="[`+first(100)+` +15 more]" removed_count=25 backends=25`)
}
