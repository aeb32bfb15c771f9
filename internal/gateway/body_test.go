package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/netguard"
)

// startBodyGateway serves cfg and returns its address and registry.
func startBodyGateway(t *testing.T, cfg *config.Config) (addr string, gw *Gateway, reg *prometheus.Registry) {
	t.Helper()
	srv, gw := startGatewayWith(t, cfg, func(d *Deps) { reg = d.Registry.(*prometheus.Registry) })
	return strings.TrimPrefix(srv.URL, "http://"), gw, reg
}

// metricValue reads one sample from reg; labels are name=value pairs.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	v, ok := lookupMetric(t, reg, name, labels...)
	if !ok {
		t.Fatalf("metric %s%v not found", name, labels)
	}
	return v
}

// metricValueOrZero is metricValue for a labelled counter that may not
// have been created yet (nothing counted): 0 then.
func metricValueOrZero(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	v, _ := lookupMetric(t, reg, name, labels...)
	return v
}

func lookupMetric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			}
		}
	}
	return 0, false
}

// waitFor polls cond (state a test cannot be notified of, such as a
// gauge) with a generous bound.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startUpload opens a raw connection and sends a chat POST announcing
// announced bytes, followed by the first sent of them.
func startUpload(t *testing.T, addr string, announced, sent int) net.Conn {
	t.Helper()
	return startUploadTo(t, addr, "/v1/chat/completions", "application/json", announced, sent)
}

// startUploadTo is startUpload to path with a Content-Type.
func startUploadTo(t *testing.T, addr, path, contentType string, announced, sent int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	head := "POST " + path + " HTTP/1.1\r\nHost: sluice\r\nContent-Type: " + contentType + "\r\nContent-Length: " +
		strconv.Itoa(announced) + "\r\n\r\n"
	if _, err := c.Write(append([]byte(head), bytes.Repeat([]byte(" "), sent)...)); err != nil {
		t.Fatal(err)
	}
	return c
}

// readResponse reads one response from c, with a generous bound.
func readResponse(t *testing.T, c net.Conn) (*http.Response, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response body: %v", err)
	}
	// Whatever follows must be the end of the connection.
	if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("connection still open after %d: read %d bytes, %v", resp.StatusCode, n, err)
	}
	return resp, string(b)
}

// Stalled uploads that announce 4 MiB (chat) or 24 MiB (audio forms,
// within max_audio_body_bytes) and send 1000 bytes hold what they sent
// (one 4 KiB step each), not what they announced; when they go away the
// bytes, their goroutines and the gauge return to where they were.
func TestStalledUploadsHoldBytesReceivedNotAnnounced(t *testing.T) {
	const conns, announced, announcedAudio, sent = 300, 4 << 20, 24 << 20, 1000
	cfg := testConfig(newOKBackend(t).URL)
	addr, gw, reg := startBodyGateway(t, cfg)
	baseline := runtime.NumGoroutine()

	open := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range conns {
		if i%2 == 0 {
			open = append(open, startUpload(t, addr, announced, sent))
		} else {
			open = append(open, startUploadTo(t, addr, "/v1/audio/transcriptions", "multipart/form-data; boundary=b", announcedAudio, sent))
		}
	}
	// Every handler has its first step of buffer once the bytes are in.
	waitUntil(t, "every stalled upload to be reading", func() bool {
		return metricValue(t, reg, "sluice_request_body_bytes") >= conns*4096
	})
	held := metricValue(t, reg, "sluice_request_body_bytes")
	if perConn := held / conns; perConn > 8192 {
		t.Fatalf("each stalled upload holds %.0f bytes after sending %d (announced %d)", perConn, sent, announced)
	}
	if held != float64(gw.bodyMem.Held()) {
		t.Fatalf("gauge %.0f, budget %d", held, gw.bodyMem.Held())
	}
	t.Logf("%d stalled uploads announcing %d MiB (chat) or %d MiB (audio) each hold %.0f KiB of body buffers",
		conns, announced>>20, announcedAudio>>20, held/1024)

	for _, c := range open {
		c.Close()
	}
	open = nil
	waitUntil(t, "the body bytes to be released", func() bool { return metricValue(t, reg, "sluice_request_body_bytes") == 0 })
	waitUntil(t, "the handlers' goroutines to end", func() bool { return runtime.NumGoroutine() <= baseline+5 })
}

// A body that stops arriving is cut after body_read_timeout with an
// OpenAI-shaped 408, and the connection is closed; an audio form within
// its larger bound too.
func TestTricklingBodyCutAfterGap(t *testing.T) {
	cfg := testConfig(newOKBackend(t).URL)
	cfg.Server.BodyReadTimeout = config.Duration(200 * time.Millisecond)
	addr, _, reg := startBodyGateway(t, cfg)

	announced := startUpload(t, addr, 1000, 10)
	defer announced.Close()
	audio := startUploadTo(t, addr, "/v1/audio/translations", "multipart/form-data; boundary=b", 20<<20, 10)
	defer audio.Close()
	chunked, err := net.Dial("tcp", addr) // no Content-Length: the body's end is unknown
	if err != nil {
		t.Fatal(err)
	}
	defer chunked.Close()
	io.WriteString(chunked, "POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n{\"model\"")
	for _, c := range []net.Conn{announced, audio, chunked} {
		resp, body := readResponse(t, c)
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("status %d, want 408: %s", resp.StatusCode, body)
		}
		if _, code, msg := apiErr(t, body); code != "request_timeout" || !strings.Contains(msg, "200ms") {
			t.Fatalf("code %q message %q", code, msg)
		}
	}
	if got := metricValue(t, reg, "sluice_request_body_timeouts_total", "bound", "gap"); got != 3 {
		t.Fatalf("gap timeouts = %v", got)
	}
	if h := metricValue(t, reg, "sluice_request_body_bytes"); h != 0 {
		t.Fatalf("a cut body still holds %v bytes", h)
	}
}

// A body that keeps trickling (never a long gap) is cut by the total
// budget.
func TestTricklingBodyCutByTotalBudget(t *testing.T) {
	cfg := testConfig(newOKBackend(t).URL)
	cfg.Server.BodyTotalTimeout = config.Duration(300 * time.Millisecond)
	addr, _, reg := startBodyGateway(t, cfg)

	c := startUpload(t, addr, 1<<20, 1)
	defer c.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the attacker: one byte every 20ms, far below the 60s gap timeout
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	resp, body := readResponse(t, c)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408: %s", resp.StatusCode, body)
	}
	if _, code, msg := apiErr(t, body); code != "request_timeout" || !strings.Contains(msg, "within 300ms") {
		t.Fatalf("code %q message %q", code, msg)
	}
	if got := metricValue(t, reg, "sluice_request_body_timeouts_total", "bound", "total"); got != 1 {
		t.Fatalf("total timeouts = %v", got)
	}
}

// Past server.max_body_memory, a new upload gets 503 with Retry-After
// instead of more memory; when the held body goes, uploads pass again.
func TestBodyMemoryBoundRefusesWith503(t *testing.T) {
	cfg := testConfig(newOKBackend(t).URL)
	cfg.MaxBodyBytes = 64 << 10
	cfg.MaxAudioBodyBytes = 64 << 10
	cfg.Server.MaxBodyMemory = 64 << 10
	addr, _, reg := startBodyGateway(t, cfg)
	url := "http://" + addr + "/v1/chat/completions"

	hog := startUpload(t, addr, 65_000, 63_000) // sixteen 4 KiB blocks, the whole budget, then stalls
	defer hog.Close()
	waitUntil(t, "the stalled upload to hold the whole budget", func() bool {
		return metricValue(t, reg, "sluice_request_body_bytes") == 64<<10
	})
	big := `{"model":"m1","messages":[{"role":"user","content":"` + strings.Repeat("x", 10_000) + `"}]}`
	resp := post(t, url, big)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d Retry-After %q, want 503 with Retry-After: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if _, code, _ := apiErr(t, body); code != "body_memory_full" {
		t.Fatalf("code %q", code)
	}
	if got := metricValue(t, reg, "sluice_request_body_refused_total", "reason", netguard.RefusedMemory); got != 1 {
		t.Fatalf("memory refusals = %v", got)
	}

	hog.Close()
	waitUntil(t, "the stalled upload's bytes to be released", func() bool {
		return metricValue(t, reg, "sluice_request_body_bytes") == 0
	})
	resp = post(t, url, big)
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the hog left: status %d: %s", resp.StatusCode, body)
	}
}

// An announced oversize (1 GiB, a few bytes sent) is refused before any
// byte is buffered, and counted; the 413 names the bound of its path.
func TestOversizedBodyCounted(t *testing.T) {
	cfg := testConfig(newOKBackend(t).URL)
	cfg.MaxBodyBytes = 1 << 10
	cfg.MaxAudioBodyBytes = 64 << 10
	cfg.Server.MaxBodyMemory = 1 << 20
	addr, _, reg := startBodyGateway(t, cfg)
	for i, up := range []struct{ path, contentType, bound string }{
		{"/v1/chat/completions", "application/json", "limit of 1024 bytes (max_body_bytes)"},
		{"/v1/audio/transcriptions", "multipart/form-data; boundary=b", "limit of 65536 bytes (max_audio_body_bytes)"},
	} {
		c := startUploadTo(t, addr, up.path, up.contentType, 1<<30, 100)
		resp, body := readResponse(t, c)
		c.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s: status %d: %s", up.path, resp.StatusCode, body)
		}
		if _, code, msg := apiErr(t, body); code != "request_too_large" || !strings.Contains(msg, up.bound) {
			t.Errorf("%s: code %q message %q, want it to name the %s", up.path, code, msg, up.bound)
		}
		if got := metricValue(t, reg, "sluice_request_body_refused_total", "reason", netguard.RefusedTooLarge); got != float64(i+1) {
			t.Fatalf("too_large refusals = %v", got)
		}
		if held := metricValue(t, reg, "sluice_request_body_bytes"); held != 0 {
			t.Fatalf("%s: %v body bytes held after refusing a 1 GiB announcement", up.path, held)
		}
	}
}

// A handler that answers without reading the body leaves net/http to
// discard it; a client that stalls there is cut by the same gap timeout
// instead of pinning the connection and its goroutine.
func TestUnreadStalledBodyDoesNotPinConnection(t *testing.T) {
	cfg := testConfig(newOKBackend(t).URL)
	cfg.Server.BodyReadTimeout = config.Duration(200 * time.Millisecond)
	addr, _, _ := startBodyGateway(t, cfg)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /v1/nowhere HTTP/1.1\r\nHost: sluice\r\nContent-Length: 1000\r\n\r\n0123456789")
	resp, body := readResponse(t, c) // also asserts the connection is closed after
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
}

// Once the body is in, its deadline is lifted: an answer that streams for
// longer than body_read_timeout is not cut (net/http's background read of
// the connection would otherwise time out and cancel the request).
func TestStreamOutlivesBodyReadTimeout(t *testing.T) {
	const gap = 200 * time.Millisecond
	sse := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[]}\n\n")
		w.(http.Flusher).Flush()
		time.Sleep(3 * gap) // a slow backend: the scenario, not synchronisation
		io.WriteString(w, "data: {\"choices\":[]}\n\ndata: [DONE]\n\n")
	}))
	cfg := testConfig(sse)
	cfg.Server.BodyReadTimeout = config.Duration(gap)
	addr, _, _ := startBodyGateway(t, cfg)
	resp := post(t, "http://"+addr+"/v1/chat/completions", `{"model":"m1","stream":true,"messages":[]}`)
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Fatalf("status %d, stream cut: %q", resp.StatusCode, body)
	}
}
