package chaos

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/app"
	"github.com/sluice-gw/sluice/internal/config"
)

// TestJobCheckPassesAJobFailedWithItsBackendsAnswer: a real gateway (its
// embedded job queue) runs a job whose backend answers a final 400 →
// the job is "failed" with that answer as its result and no error, as
// GET /v1/jobs/{id} and its webhook show it → the job check counts the
// webhook as the job's one result: no stray, the jobs target passes.
// Before, the receiver took a failed webhook without an "error" for no
// job's result: stray, and the row failed on every job a backend
// answered 4xx or 5xx (a final 500, a 504, the last attempt's 502).
func TestJobCheckPassesAJobFailedWithItsBackendsAnswer(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"message":"no","type":"invalid_request_error","param":"messages","code":null}}`)
	}))
	defer backend.Close()
	jt, err := startJobTracker()
	if err != nil {
		t.Fatal(err)
	}
	defer jt.close()
	url := runJobGateway(t, backend.URL)

	if o, _, why := jt.one(url, 0); o != served {
		t.Fatalf("job submit: %v %s", o, why)
	}
	// The webhook first (a hang's bound, not a timing): settle then reads
	// what the receiver made of it.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		jt.mu.Lock()
		got := len(jt.deliveries) + len(jt.invalid)
		jt.mu.Unlock()
		if got > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no webhook within a minute")
		}
	}
	row := Row{Jobs: true}
	jt.settle(context.Background(), url, time.Minute, &row)
	if v, err := jt.status(url, jt.accepted[0]); err != nil || v.Status != "failed" {
		t.Fatalf("the job: %+v %v, want failed with its backend's answer", v, err)
	}
	if row.Stray != 0 || row.Lost != 0 || row.Duped != 0 || row.jobTarget() != "PASS" {
		t.Errorf("stray %d, lost %d, duplicated %d, jobs target %s; want 0, 0, 0, PASS (notes %q)",
			row.Stray, row.Lost, row.Duped, row.jobTarget(), row.Notes)
	}
}

// runJobGateway runs a gateway with the embedded job queue in front of
// backend until the test ends, and returns its URL.
func runJobGateway(t *testing.T, backend string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf(`listen: 127.0.0.1:0
admin: {listen: "127.0.0.1:0"}
log: {access: false}
health: {active: {interval: 0s}}
queue:
  data_dir: %s
  webhook_secret: s3cret
  allow_private_webhooks: true
models:
  - name: sim-model
    backends:
      - url: %s
`, t.TempDir(), backend)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(cfg, app.Source{Path: path}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}
