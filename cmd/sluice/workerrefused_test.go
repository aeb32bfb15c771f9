package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A gateway that answers the worker's queue question with a refusal is
// running: the worker says what the gateway said (here: it has no worker
// credential at all, which no --token fixes), not "is the gateway
// running?" after a guess about --token. Before, a worker started against
// a gateway without admin.worker_token or admin.token printed
// "check --token against admin.worker_token ... (is the gateway running,
// with --admin its admin.listen? or pass --nats)". A gateway that does
// not answer still gets that question.
func TestWorkerSaysTheGatewaysRefusal(t *testing.T) {
	says := "separate workers need admin.worker_token (or admin.token) set on the gateway and sent by the worker (--token)"
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":{"message":"` + says + `","type":"invalid_request_error","param":null,"code":"admin_token_required"}}`))
	}))
	defer admin.Close()
	code, _, errs := runCLI("worker", "--admin", admin.URL, "--token", "t")
	if code != 1 || !strings.Contains(errs, "refused the worker (403): "+says) || strings.Contains(errs, "is the gateway running") {
		t.Errorf("exit %d, stderr %q; want 1, the gateway's own message, and no question whether it runs", code, errs)
	}

	// Nothing listening: the question is the right one.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	code, _, errs = runCLI("worker", "--admin", "http://"+addr, "--token", "t")
	if code != 1 || !strings.Contains(errs, "is the gateway running") {
		t.Errorf("unreachable admin: exit %d, stderr %q; want 1 and the question whether the gateway runs", code, errs)
	}
}
