package app

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/sim"
	"github.com/sluice-gw/sluice/internal/testutil/promtest"
	"github.com/sluice-gw/sluice/internal/testutil/selfsigned"
)

// startTLSApp writes a config with tls: (the pair in dir) and model m1 on
// backendURL, then extra (more models' items, or top-level keys), runs the
// app on a loopback port and returns it and its address.
func startTLSApp(t *testing.T, dir, certFile, keyFile, backendURL, extra string) (*App, string) {
	t.Helper()
	path := filepath.Join(dir, "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\n"+
		"tls: {cert_file: %s, key_file: %s}\nmodels:\n  - name: m1\n    backends:\n      - url: %s\n%s",
		certFile, keyFile, backendURL, extra)
	writeFile(t, path, src)
	a := newApp(t, path)
	url, _ := serveApp(t, a)
	return a, strings.TrimPrefix(url, "http://")
}

func tlsClient(roots *x509.CertPool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// A client speaking TLS gets a chat completion through the gateway, over
// HTTP/1.1 although it offers h2 too (ALPN http/1.1 only), and a stream
// from the simulator to its end; the framing guard reads the decrypted
// bytes: a head with both Content-Length and Transfer-Encoding, sent
// inside TLS, is still refused.
func TestTLSChatCompletion(t *testing.T) {
	pair := selfsigned.New(t, 1)
	dir := t.TempDir()
	certFile, keyFile := pair.Write(t, dir)
	simulator := httptest.NewServer(sim.New(sim.Config{Model: "m2", Instant: true}))
	t.Cleanup(simulator.Close)
	_, addr := startTLSApp(t, dir, certFile, keyFile, backend(t, "a").URL,
		"  - name: m2\n    backends:\n      - url: "+simulator.URL+"\n")

	cl := tlsClient(selfsigned.Pool(pair))
	defer cl.CloseIdleConnections()
	resp, err := cl.Post("https://"+addr+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m1","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"served_by":"a"`) {
		t.Fatalf("chat over TLS: %d %s", resp.StatusCode, body)
	}
	if resp.ProtoMajor != 1 || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "http/1.1" {
		t.Fatalf("protocol %s, ALPN %q; want HTTP/1.1 negotiated", resp.Proto, resp.TLS.NegotiatedProtocol)
	}
	resp, err = cl.Post("https://"+addr+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m2","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "data: [DONE]") {
		t.Fatalf("stream over TLS: %d %s", resp.StatusCode, body)
	}

	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: selfsigned.Pool(pair)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	r, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusBadRequest {
		t.Fatalf("ambiguous framing inside TLS: %d, want 400 from the framing guard", r.StatusCode)
	}
}

// A plain-HTTP request on the TLS port is answered in plain HTTP: a 400
// saying the port speaks HTTPS, as an OpenAI error object, then a close.
func TestPlainHTTPOnTLSPortGets400(t *testing.T) {
	pair := selfsigned.New(t, 1)
	dir := t.TempDir()
	certFile, keyFile := pair.Write(t, dir)
	_, addr := startTLSApp(t, dir, certFile, keyFile, backend(t, "a").URL, "")

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("plain HTTP on the TLS port: %v, want a 400 in plain HTTP", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":"tls_required"`) {
		t.Fatalf("plain HTTP on the TLS port: %d %s", resp.StatusCode, body)
	}
	if n, err := br.Read(make([]byte, 1)); err == nil {
		t.Fatalf("connection still open after the 400 (read %d bytes)", n)
	}
}

// A client that opens TCP and never finishes the handshake is cut as a
// client that never sends its head is (server.read_header_timeout), and
// holds its address's slot meanwhile: another connection from it is
// answered by the refusal tier, in TLS. Once the stalled one is cut, the
// address is served again. The second connection must come within
// read_header_timeout of the first's accept: at 300 ms a loaded machine
// could let the stalled one be cut first (and the second served), so it
// is 2 s, which the wait for the cut then takes.
func TestStalledHandshakeIsCut(t *testing.T) {
	pair := selfsigned.New(t, 1)
	dir := t.TempDir()
	certFile, keyFile := pair.Write(t, dir)
	a, addr := startTLSApp(t, dir, certFile, keyFile, backend(t, "a").URL,
		"server: {read_header_timeout: 2s, max_connections_per_ip: 1}\n")
	reg := a.deps.Registry.(*prometheus.Registry)

	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	stalled.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello's record, and no more
	eventually(t, "the stalled connection to be admitted", func() bool {
		return promtest.Value(t, reg, "sluice_connections_open", "") == 1
	})

	cl := tlsClient(selfsigned.Pool(pair))
	cl.Transport.(*http.Transport).DisableKeepAlives = true
	resp, err := cl.Get("https://" + addr + "/v1/models")
	if err != nil {
		t.Fatalf("second connection while the first stalls: %v, want the refusal tier's 503 over TLS", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second connection while the first stalls: %d, want 503 (max_connections_per_ip is 1)", resp.StatusCode)
	}

	// Cut by the server: the read ends well before the client's own deadline.
	stalled.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := stalled.Read(make([]byte, 512))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("stalled handshake: read %d bytes, %v; want the server to close it", n, err)
	}
	if n != 0 {
		t.Fatalf("stalled handshake: got %d bytes, want none (no plain-text 408 inside a TLS port)", n)
	}
	if got := promtest.Value(t, reg, "sluice_connection_timeouts_total", "header"); got != 1 {
		t.Fatalf("header timeouts = %v, want the stalled handshake counted", got)
	}
	// No 408 could be written inside an unfinished handshake, so there
	// was nothing to linger for: the slot is freed at the cut.
	for _, end := range []string{"eof", "timeout", "bytes", "error"} {
		if got := promtest.Value(t, reg, "sluice_connection_lingers_total", end); got != 0 {
			t.Fatalf("lingering closes ended by %s = %v, want none after a failed 408", end, got)
		}
	}
	eventually(t, "the address to be served again", func() bool {
		resp, err := cl.Get("https://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// A reload re-reads the pair: the next connection gets the new certificate
// (told by its serial); a pair that does not load refuses the reload and
// the one before keeps serving. A connection opened before keeps working.
func TestReloadRotatesCertificate(t *testing.T) {
	first, second := selfsigned.New(t, 101), selfsigned.New(t, 202)
	dir := t.TempDir()
	certFile, keyFile := first.Write(t, dir)
	a, addr := startTLSApp(t, dir, certFile, keyFile, backend(t, "a").URL, "")
	roots := selfsigned.Pool(first, second)
	serial := func() int64 { return servedSerial(t, addr, roots) }
	if got := serial(); got != 101 {
		t.Fatalf("serial %d at start, want 101", got)
	}
	kept := tlsClient(roots)
	defer kept.CloseIdleConnections()
	get := func() int {
		resp, err := kept.Get("https://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	get()

	second.Write(t, dir)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != 202 {
		t.Fatalf("serial %d after the reload, want the new pair's 202", got)
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("the connection opened before the rotation: %d", code)
	}

	// A certificate with another pair's key: refused, the old pair serves.
	if err := os.WriteFile(keyFile, first.Key, 0o600); err != nil {
		t.Fatal(err)
	}
	err := a.Reload()
	if err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Fatalf("reload with a mismatched pair: %v, want refused naming tls.cert_file", err)
	}
	if got := serial(); got != 202 {
		t.Fatalf("serial %d after a refused reload, want 202 still", got)
	}
}

// A renewed pair written over the old one (by rename, as certbot and
// Kubernetes do) is served without a SIGHUP: the file watch follows the
// pair's directory as it does the config file's.
func TestCertificateChangeReloads(t *testing.T) {
	first, second := selfsigned.New(t, 101), selfsigned.New(t, 202)
	cfgDir, certs := t.TempDir(), t.TempDir() // the pair apart from the config, as in /etc/letsencrypt
	certFile, keyFile := first.Write(t, certs)
	_, addr := startTLSApp(t, cfgDir, certFile, keyFile, backend(t, "a").URL, "")
	roots := selfsigned.Pool(first, second)
	serial := func() int64 { return servedSerial(t, addr, roots) }
	if got := serial(); got != 101 {
		t.Fatalf("serial %d at start, want 101", got)
	}
	second.Write(t, certs)
	eventually(t, "the renewed certificate to be served", func() bool { return serial() == 202 })
}

// A Kubernetes Secret volume: the files are links through "..data", which
// the kubelet swaps by rename when the Secret changes (cert-manager's
// renewal); nothing happens to the files' own names, and the gateway still
// serves the renewed pair.
func TestCertificateSecretSwapReloads(t *testing.T) {
	first, second := selfsigned.New(t, 101), selfsigned.New(t, 202)
	cfgDir, vol := t.TempDir(), t.TempDir()
	publish := func(p selfsigned.PEM, version string) {
		dir := filepath.Join(vol, version)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		p.Write(t, dir)
		tmp := filepath.Join(vol, "..data_tmp")
		if err := os.Symlink(version, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(vol, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish(first, "..2026_12_05_01")
	certFile, keyFile := filepath.Join(vol, "tls.crt"), filepath.Join(vol, "tls.key")
	if err := os.Symlink("..data/cert.pem", certFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/key.pem", keyFile); err != nil {
		t.Fatal(err)
	}
	_, addr := startTLSApp(t, cfgDir, certFile, keyFile, backend(t, "a").URL, "")
	roots := selfsigned.Pool(first, second)
	serial := func() int64 { return servedSerial(t, addr, roots) }
	if got := serial(); got != 101 {
		t.Fatalf("serial %d at start, want 101", got)
	}
	publish(second, "..2026_12_05_02")
	eventually(t, "the swapped Secret's certificate to be served", func() bool { return serial() == 202 })
}

// servedSerial is the serial number of the certificate a new connection
// to addr is served.
func servedSerial(t *testing.T, addr string, roots *x509.CertPool) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// An over-cap connection whose TLS handshake never finishes, in the
// refusal tier, cannot read a 503: it is closed at refusal_head_timeout
// and counted apart (outcome "handshake"), not as a reset or failed write
// ("error"), so a handshake flood shows as one. A plain-HTTP request over
// the cap gets the 400 tls_required, and is counted the same way.
func TestOverCapUnfinishedHandshakeCounted(t *testing.T) {
	pair := selfsigned.New(t, 1)
	dir := t.TempDir()
	certFile, keyFile := pair.Write(t, dir)
	a, addr := startTLSApp(t, dir, certFile, keyFile, backend(t, "a").URL,
		"server: {max_connections_per_ip: 1, refusal_head_timeout: 200ms}\n")
	reg := a.deps.Registry.(*prometheus.Registry)

	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	eventually(t, "the first connection to be admitted", func() bool {
		return promtest.Value(t, reg, "sluice_connections_open", "") == 1
	})

	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	stalled.Write([]byte{0x16, 0x03, 0x01}) // a ClientHello's record begun, never finished
	stalled.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := stalled.Read(make([]byte, 512)); n != 0 || err == nil {
		t.Fatalf("over-cap stalled handshake: read %d bytes, %v; want a close with nothing", n, err)
	}
	if got := promtest.Value(t, reg, "sluice_connection_refusals_total", "handshake"); got != 1 {
		t.Fatalf("refusals ended by an unfinished handshake = %v, want 1", got)
	}

	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(plain, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(plain), nil)
	if err != nil {
		t.Fatalf("plain HTTP over the cap: %v, want the 400 tls_required", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":"tls_required"`) {
		t.Fatalf("plain HTTP over the cap: %d %s", resp.StatusCode, body)
	}
	eventually(t, "the plain-HTTP refusal to be counted", func() bool {
		return promtest.Value(t, reg, "sluice_connection_refusals_total", "handshake") == 2
	})
	if got := promtest.Value(t, reg, "sluice_connection_refusals_total", "error"); got != 0 {
		t.Fatalf("refusals ended in error = %v, want none (both were handshakes)", got)
	}
}
