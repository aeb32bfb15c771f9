package gateway

import (
	"strings"
	"testing"
)

// /status (and the dashboard, which renders it) shows a backend's URL
// with its password hidden, as it shows the NATS URL; it showed it whole.
func TestStatusHidesBackendURLPassword(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(strings.Replace(be.URL, "http://", "http://user:s3cretPW@", 1))
	_, gw := startGateway(t, cfg)
	code, _, body := get(t, adminServer(t, gw).URL+"/status")
	if code != 200 || strings.Contains(body, "s3cretPW") || !strings.Contains(body, "user:xxxxx@") {
		t.Fatalf("/status %d: want the backend URL with its password hidden:\n%.600s", code, body)
	}
}
