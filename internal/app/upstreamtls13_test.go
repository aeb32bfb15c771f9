package app

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
)

// A TLS 1.3 backend that requires a client certificate the gateway has
// none of: the client's handshake is over before the backend refuses, so
// the refusal reaches the request as the backend's alert on the first
// read, or (the backend already gone) a broken pipe on the first write or
// HTTP/2's "client conn could not be established". Every one is a TLS
// failure with the backend: 502 upstream_unreachable with Retry-After,
// and a log line naming the missing certificate. The old code classed the
// second kind as the backend failing (502 upstream_error): 4 of 10 here.
func TestUpstreamTLS13ClientCertificateRefusalIsATLSFailure(t *testing.T) {
	ca := newTestCA(t, "mesh")
	serverCert, _, _ := ca.issue(t, false, true)
	be := newTLSBackend(t, serverCert, ca, tls.VersionTLS13)
	dir := t.TempDir()
	caFile := writePEM(t, dir, "ca.pem", ca.pem)
	url, _, logs := startUpstreamTLSApp(t, dir, be.URL, "        tls: {ca_file: "+caFile+"}\n", "health: {active: {interval: 0s}}\n")
	const n = 15 // below the circuit breaker's 20 failures
	var unreachable int
	for range n {
		code, body, retry := chatFull(t, url)
		if code == http.StatusBadGateway && retry != "" && strings.Contains(body, `"upstream_unreachable"`) {
			unreachable++
		} else {
			t.Errorf("got %d Retry-After %q %s; want 502 upstream_unreachable", code, retry, body)
		}
	}
	named := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `msg="request failed"`) && strings.Contains(line, "TLS with the backend failed") &&
			(strings.Contains(line, "certificate required") || strings.Contains(line, "asked for a client certificate")) {
			named++
		}
	}
	if unreachable != n || named != n {
		t.Fatalf("%d of %d upstream_unreachable, %d log lines naming the certificate; log:\n%s", unreachable, n, named, logs)
	}
}
