package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// A separate worker started without --nats asks the gateway's admin
// listener which NATS holds its queue, and gets the embedded server's
// random port even though another NATS (the machine's own, here a second
// embedded server) runs beside it: the job it runs is the gateway's. The
// same URL is on /status.
func TestWorkerAsksTheGatewayForItsQueue(t *testing.T) {
	decoy, err := jobs.StartEmbedded(jobs.EmbeddedOptions{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { decoy.Shutdown(); decoy.WaitForShutdown() })

	be, calls := countingBackend(t)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf(`listen: 127.0.0.1:0
`+noProbes+`log: {access: false}
admin: {token: %s}
queue:
  data_dir: %s
  worker_disabled: true
models:
  - name: m
    backends:
      - url: %s
`, testAdminToken, t.TempDir(), be.URL)
	writeFile(t, path, src)
	url, admin, stop, done := startAppAdmin(t, path)
	t.Cleanup(func() { stop(); <-done })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := jobs.AskQueueURL(ctx, admin, "wrong", nil); err == nil {
		t.Fatal("the queue URL was told to a worker with a wrong admin token")
	}
	natsURL, err := jobs.AskQueueURL(ctx, admin, testAdminToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	if natsURL == decoy.ClientURL() || natsURL == "" {
		t.Fatalf("asked URL %q, the other NATS is %q", natsURL, decoy.ClientURL())
	}
	if st := adminQueue(t, admin); st.Mode != "embedded" || st.URL != natsURL {
		t.Fatalf("/status queue = %+v, want embedded at %s", st, natsURL)
	}

	job := submitAsync(t, url, "")
	store, err := jobs.Open(ctx, jobs.Options{URL: natsURL, Name: "test-worker", NoTracker: true,
		BusyDelay: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	wctx, stopWorker := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() {
		wdone <- store.RunWorker(wctx, jobs.WorkerOptions{Concurrency: 1, PollWait: 100 * time.Millisecond, Grace: time.Second,
			Executor: &jobs.HTTPExecutor{Admin: admin, Token: testAdminToken}})
	}()
	defer func() { stopWorker(); <-wdone }()
	waitJob(t, url, job, "", func(m map[string]any) bool { return m["status"] == "succeeded" })
	if n := calls.Load(); n != 1 {
		t.Fatalf("backend calls %d, want 1", n)
	}
}

type queueStatus struct {
	Mode string `json:"mode"`
	URL  string `json:"nats_url"`
}

func adminQueue(t *testing.T, admin string) queueStatus {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, admin+"/status", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Queue *queueStatus `json:"queue"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Queue == nil {
		t.Fatalf("/status: %v, queue %v", err, st.Queue)
	}
	return *st.Queue
}
