package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// testCA is a certificate authority made for one test, issuing server
// and client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a leaf for the given DNS names (and 127.0.0.1 when ip), for
// server or client use, and returns it as a tls.Certificate and as PEM.
func (ca *testCA) issue(t *testing.T, client, ip bool, names ...string) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, DNSNames: names}
	if ip {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM, keyPEM
}

// tlsBackend is a real TLS server (HTTP/2 offered) with cert, requiring
// a client certificate from clientCA when that is set. It answers chat
// completions and /health, and records what it saw.
type tlsBackend struct {
	*httptest.Server
	proto   atomic.Value // last request's protocol
	sni     atomic.Value // last handshake's server name
	healths atomic.Int64 // /health requests over TLS
}

func newTLSBackend(t *testing.T, cert tls.Certificate, clientCA *testCA, maxVersion ...uint16) *tlsBackend {
	b := &tlsBackend{}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		b.proto.Store(r.Proto)
		if r.TLS != nil {
			b.sni.Store(r.TLS.ServerName)
		}
		if r.URL.Path == "/health" {
			if r.TLS != nil {
				b.healths.Add(1)
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"served_by":"tls"}`)
	}))
	b.EnableHTTP2 = true
	b.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if len(maxVersion) > 0 {
		b.TLS.MaxVersion = maxVersion[0]
	}
	if clientCA != nil {
		pool := x509.NewCertPool()
		pool.AddCert(clientCA.cert)
		b.TLS.ClientAuth, b.TLS.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	b.Config.ErrorLog = log.New(io.Discard, "", 0) // the refusals are the point
	b.StartTLS()
	t.Cleanup(b.Close)
	return b
}

func writePEM(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p+".tmp", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		t.Fatal(err)
	}
	return p
}

// startUpstreamTLSApp runs the app on a config of model m1 on url with
// backend keys extra (indented under the backend) and top-level keys top;
// it returns the client URL, the app and its log. Without top, active
// health checks are off, so a request, not a probe, meets the backend's
// TLS first.
func startUpstreamTLSApp(t *testing.T, dir, url, extra, top string) (string, *App, *logbuf.Buffer) {
	t.Helper()
	if top == "" {
		top = "health: {active: {interval: 0s}}\n"
	}
	path := filepath.Join(dir, "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\nretry: {attempts: 1}\n%s"+
		"models:\n  - name: m1\n    backends:\n      - url: %s\n%s", top, url, extra)
	writePEM(t, dir, "sluice.yaml", []byte(src))
	a, logs := newLoggedApp(t, path, config.Load)
	u, _ := serveApp(t, a)
	return u, a, logs
}

// chatFull is chat with the response's Retry-After.
func chatFull(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m1","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Retry-After")
}

// wantTLSRefusal checks a request the backend's TLS failed: the usual
// 502 with Retry-After, no Go TLS text in the answer, and a log line
// naming the backend and the TLS cause.
func wantTLSRefusal(t *testing.T, url string, logs *logbuf.Buffer, host, cause string) {
	t.Helper()
	code, body, retry := chatFull(t, url)
	if code != http.StatusBadGateway || retry == "" || !strings.Contains(body, `"upstream_unreachable"`) {
		t.Fatalf("got %d Retry-After %q %s; want 502 upstream_unreachable with Retry-After; log:\n%s", code, retry, body, logs)
	}
	for _, leak := range []string{"x509", "tls:", "certificate"} {
		if strings.Contains(body, leak) {
			t.Fatalf("answer carries Go's TLS error (%q): %s", leak, body)
		}
	}
	// The line is written once the answer is (the request's record).
	eventually(t, "a request failed line naming backend="+host+" and "+cause, func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, `msg="request failed"`) && strings.Contains(line, "backend="+host) && strings.Contains(line, cause) {
				return true
			}
		}
		return false
	})
}

// privateCABackend starts a TLS backend whose certificate (for 127.0.0.1
// when ip, and for names) a new private CA issued, and writes that CA to
// dir/ca.pem, dir a new temporary directory: the backend, dir, the file.
func privateCABackend(t *testing.T, ip bool, names ...string) (be *tlsBackend, dir, caFile string) {
	t.Helper()
	ca := newTestCA(t, "private")
	cert, _, _ := ca.issue(t, false, ip, names...)
	be = newTLSBackend(t, cert, nil)
	dir = t.TempDir()
	return be, dir, writePEM(t, dir, "ca.pem", ca.pem)
}

// wantTLSRefusalWith starts another app on be, with backend keys extra,
// whose request fails on be's TLS with cause (wantTLSRefusal).
func wantTLSRefusalWith(t *testing.T, be *tlsBackend, extra, cause string) {
	t.Helper()
	url, _, logs := startUpstreamTLSApp(t, t.TempDir(), be.URL, extra, "")
	wantTLSRefusal(t, url, logs, strings.TrimPrefix(be.URL, "https://"), cause)
}

// A backend behind a private CA answers through its own tls.ca_file, over
// HTTP/2; without ca_file (the system roots) the request is a backend
// connection failure: 502 with Retry-After, and the log names the
// backend and the unknown authority.
func TestUpstreamTLSPrivateCA(t *testing.T) {
	be, dir, caFile := privateCABackend(t, true, "localhost")

	url, _, _ := startUpstreamTLSApp(t, dir, be.URL, "        tls: {ca_file: "+caFile+"}\n", "")
	if code, body, _ := chatFull(t, url); code != 200 || !strings.Contains(body, `"tls"`) {
		t.Fatalf("with ca_file: %d %s", code, body)
	}
	if p, _ := be.proto.Load().(string); p != "HTTP/2.0" {
		t.Fatalf("backend saw %q, want HTTP/2.0", p)
	}

	wantTLSRefusalWith(t, be, "", "certificate signed by unknown authority")
}

// upstream_tls is every https backend's default.
func TestUpstreamTLSDefaultBlock(t *testing.T) {
	be, dir, caFile := privateCABackend(t, true)
	url, _, _ := startUpstreamTLSApp(t, dir, be.URL, "", "health: {active: {interval: 0s}}\nupstream_tls: {ca_file: "+caFile+"}\n")
	if code, body, _ := chatFull(t, url); code != 200 {
		t.Fatalf("with upstream_tls.ca_file: %d %s", code, body)
	}
}

// A backend requiring a client certificate (mTLS) answers when cert_file
// and key_file name one its CA signed, and refuses one without (the
// backend's alert in the log). The backend speaks TLS 1.2, where the
// refusal ends the handshake; in 1.3
// the client's handshake is over before the server's verdict, which
// comes as an alert on the first read or, when the server has already
// closed, as a broken pipe on the first write: both a TLS failure
// (TestUpstreamTLS13ClientCertificateRefusalIsATLSFailure).
func TestUpstreamTLSClientCertificate(t *testing.T) {
	ca := newTestCA(t, "mesh")
	serverCert, _, _ := ca.issue(t, false, true)
	be := newTLSBackend(t, serverCert, ca, tls.VersionTLS12)
	dir := t.TempDir()
	caFile := writePEM(t, dir, "ca.pem", ca.pem)
	_, certPEM, keyPEM := ca.issue(t, true, false, "sluice")
	certFile, keyFile := writePEM(t, dir, "client.pem", certPEM), writePEM(t, dir, "client.key", keyPEM)

	url, _, _ := startUpstreamTLSApp(t, dir, be.URL,
		fmt.Sprintf("        tls: {ca_file: %s, cert_file: %s, key_file: %s}\n", caFile, certFile, keyFile), "")
	if code, body, _ := chatFull(t, url); code != 200 {
		t.Fatalf("with a client certificate: %d %s", code, body)
	}

	wantTLSRefusalWith(t, be, "        tls: {ca_file: "+caFile+"}\n", "remote error: tls: handshake failure")
}

// server_name is sent as SNI and is the name checked: a certificate for
// vllm.internal only, served at 127.0.0.1, passes with it and fails
// (name mismatch) without.
func TestUpstreamTLSServerName(t *testing.T) {
	be, dir, caFile := privateCABackend(t, false, "vllm.internal")

	url, _, _ := startUpstreamTLSApp(t, dir, be.URL, "        tls: {ca_file: "+caFile+", server_name: vllm.internal}\n", "")
	if code, body, _ := chatFull(t, url); code != 200 {
		t.Fatalf("with server_name: %d %s", code, body)
	}
	if sni, _ := be.sni.Load().(string); sni != "vllm.internal" {
		t.Fatalf("backend saw SNI %q, want vllm.internal", sni)
	}

	wantTLSRefusalWith(t, be, "        tls: {ca_file: "+caFile+"}\n", "doesn't contain any IP SANs")
}

// A reload reads ca_file again: the CA the backend's certificate chains
// to, written to the same path, is trusted from the reload its change
// starts on; a file
// that no longer parses refuses the reload (FILE:LINE: key) and the
// running CA keeps serving.
func TestUpstreamTLSReloadSwapsCA(t *testing.T) {
	right, wrong := newTestCA(t, "right"), newTestCA(t, "wrong")
	cert, _, _ := right.issue(t, false, true)
	be := newTLSBackend(t, cert, nil)
	dir := t.TempDir()
	caFile := writePEM(t, dir, "ca.pem", wrong.pem)
	url, a, logs := startUpstreamTLSApp(t, dir, be.URL, "        tls: {ca_file: "+caFile+"}\n", "")
	wantTLSRefusal(t, url, logs, strings.TrimPrefix(be.URL, "https://"), "certificate signed by unknown authority")

	// The file watch follows ca_file as it does the listener's pair: no
	// SIGHUP needed.
	writePEM(t, dir, "ca.pem", right.pem)
	eventually(t, "the renewed ca_file to be read", func() bool {
		code, _, _ := chatFull(t, url)
		return code == 200
	})

	writePEM(t, dir, "ca.pem", []byte("not a certificate\n"))
	err := a.Reload()
	if err == nil || !strings.Contains(err.Error(), "sluice.yaml:10: models[0].backends[0].tls.ca_file: "+caFile+" holds no PEM certificate") {
		t.Fatalf("reload with a bad ca_file: %v", err)
	}
	if code, body, _ := chatFull(t, url); code != 200 {
		t.Fatalf("after the refused reload: %d %s", code, body)
	}
}

// The active health check probes an https backend with its tls block:
// the probes reach it over TLS (with the system roots they would not)
// and it stays up. The probes' bound is the default 2 s (it can be no
// more than the interval): at 50 ms one handshake slowed by a loaded
// machine failed a probe, and one failure (active.fails: 1) marks the
// backend down.
func TestUpstreamTLSHealthProbe(t *testing.T) {
	be, dir, caFile := privateCABackend(t, true)
	_, a, _ := startUpstreamTLSApp(t, dir, be.URL, "        engine: vllm\n        tls: {ca_file: "+caFile+"}\n",
		"health: {active: {interval: 2s, timeout: 2s}}\n")
	eventually(t, "two health probes over TLS", func() bool { return be.healths.Load() >= 2 })
	for _, b := range a.gw.Runtime().Backends() {
		if s := b.State(time.Now()); s.String() != "healthy" {
			t.Fatalf("backend %s is %s after probes over TLS", b.Name(), s)
		}
	}
}

// A discovery source's tls block is every https target's: a backend
// found in the targets file behind a private CA answers through it, and
// a reload of the unchanged config keeps the source (its key compares
// the tls block by value, not by pointer).
func TestUpstreamTLSDiscoveryTemplate(t *testing.T) {
	be, dir, caFile := privateCABackend(t, true)
	targets := filepath.Join(dir, "targets.json")
	writeTargets(t, targets, be.URL)
	path := filepath.Join(dir, "sluice.yaml")
	writePEM(t, dir, "sluice.yaml", []byte("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n"+
		"health: {active: {interval: 0s}}\nmodels:\n  - name: m1\n    discovery:\n      - type: file\n        path: "+targets+
		"\n        tls: {ca_file: "+caFile+"}\n"))
	a := newApp(t, path)
	url, _ := serveApp(t, a)
	eventually(t, "the discovered TLS backend to answer", func() bool {
		code, _, _ := chatFull(t, url)
		return code == 200
	})
	before := discoverySources(a.gw.Runtime().Config)["m1"].Key
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if after := discoverySources(a.gw.Runtime().Config)["m1"].Key; after != before {
		t.Fatalf("an unchanged discovery block changed its key across a reload:\n%s\n%s", before, after)
	}
	if code, body, _ := chatFull(t, url); code != 200 {
		t.Fatalf("after the reload: %d %s", code, body)
	}
}
