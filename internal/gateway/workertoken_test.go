package gateway

import (
	"net/http"
	"strings"
	"testing"
)

// With admin.worker_token set, the worker routes take it and not
// admin.token: whoever holds the dashboard's token no longer gets the
// queue's NATS URL (its password) nor runs requests as a tenant; /spare
// takes either; the rest of the admin listener admin.token alone. Unset,
// admin.token is the workers' credential as before.
func TestWorkerTokenIsTheWorkerRoutesCredential(t *testing.T) {
	be := newOKBackend(t)
	start := func(workerToken string) string {
		cfg := testConfig(be.URL)
		cfg.Admin.Token, cfg.Admin.WorkerToken = "dash-tok", workerToken
		_, gw := startGateway(t, cfg)
		gw.queueInfo = QueueInfo{Mode: "external", URL: "nats://u:natspw@10.0.0.1:4222"}
		return adminServer(t, gw).URL
	}
	call := func(method, url, token string) (int, string) {
		req, _ := http.NewRequest(method, url, strings.NewReader(`{"model":"m1","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readAll(t, resp)
	}
	admin := start("work-tok")
	for _, c := range []struct {
		method, path, token string
		want                int // 0: anything but 401
	}{
		{http.MethodGet, QueuePath, "dash-tok", http.StatusUnauthorized},
		{http.MethodGet, QueuePath, "work-tok", http.StatusOK},
		{http.MethodPost, WorkerPath + "/v1/chat/completions", "dash-tok", http.StatusUnauthorized},
		{http.MethodPost, WorkerPath + "/v1/chat/completions", "work-tok", 0},
		{http.MethodGet, "/status", "work-tok", http.StatusUnauthorized},
		{http.MethodGet, "/metrics", "work-tok", http.StatusUnauthorized},
		{http.MethodGet, "/status", "dash-tok", http.StatusOK},
		{http.MethodGet, "/spare?model=m1", "work-tok", 0},
		{http.MethodGet, "/spare?model=m1", "dash-tok", 0},
		{http.MethodGet, "/spare?model=m1", "wrong", http.StatusUnauthorized},
	} {
		code, body := call(c.method, admin+c.path, c.token)
		if c.want == 0 && code == http.StatusUnauthorized || c.want != 0 && code != c.want {
			t.Errorf("%s %s with %s: %d %s", c.method, c.path, c.token, code, body)
		}
		if c.token == "dash-tok" && strings.Contains(body, "natspw") {
			t.Errorf("%s %s: admin.token got the NATS password: %s", c.method, c.path, body)
		}
		if code == http.StatusUnauthorized && c.path == QueuePath && !strings.Contains(body, "invalid_worker_token") {
			t.Errorf("refusal names the wrong credential: %s", body)
		}
	}
	for _, path := range []string{"/status", "/metrics", "/scaling"} {
		if _, body := call(http.MethodGet, admin+path, "dash-tok"); strings.Contains(body, "work-tok") {
			t.Errorf("%s shows admin.worker_token", path)
		}
	}
	// Unset: admin.token is the workers' credential, as before.
	old := start("")
	if code, body := call(http.MethodGet, old+QueuePath, "dash-tok"); code != http.StatusOK || !strings.Contains(body, "natspw") {
		t.Errorf("without worker_token, admin.token: %d %s", code, body)
	}
}
