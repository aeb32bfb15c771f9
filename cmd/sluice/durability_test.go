package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestBatchSurvivesSIGKILL kills the gateway (with its embedded NATS) and a
// separate worker with SIGKILL in the middle of a batch, restarts both, and
// checks that every accepted request completes and is reported exactly once,
// with the batch counters right. Executions may repeat (a job running at the
// kill runs again: at-least-once), reports may not.
func TestBatchSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := sluiceBinary(t)

	// The backend counts executions per request and takes a little time,
	// so the batch is still running when the processes are killed.
	var mu sync.Mutex
	runs := map[string]int{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []struct{ Content string } `json:"messages"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		time.Sleep(25 * time.Millisecond)
		if len(req.Messages) > 0 {
			mu.Lock()
			runs[req.Messages[0].Content]++
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	defer backend.Close()

	dir := t.TempDir()
	gwAddr, natsAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	cfgPath := filepath.Join(dir, "sluice.yaml")
	cfg := fmt.Sprintf(`listen: %s
log: {access: false, level: warn}
admin: {listen: %s, token: admin-secret}
queue:
  data_dir: %s
  listen: %s
  workers: 4
models:
  - name: m
    backends:
      - url: %s
        max_concurrency: 8
`, gwAddr, adminAddr, filepath.Join(dir, "data"), natsAddr, backend.URL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	gwURL := "http://" + gwAddr
	start := func() (gw, worker *exec.Cmd) {
		gw = startProc(t, bin, "serve", "--config", cfgPath)
		waitHTTP(t, gwURL+"/readyz")
		worker = startProc(t, bin, "worker", "--nats", "nats://"+natsAddr,
			"--admin", "http://"+adminAddr, "--admin-token", "admin-secret", "--concurrency", "4")
		return gw, worker
	}
	gw, worker := start()

	const n = 800
	var in bytes.Buffer
	for i := range n {
		fmt.Fprintf(&in, `{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"q%d"}]}}`+"\n", i, i)
	}
	fileID := uploadBatchFile(t, gwURL, in.Bytes())
	batchID := jsonField(t, postJSON(t, gwURL+"/v1/batches",
		`{"input_file_id":"`+fileID+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`), "id")

	// Kill both once part of the batch is done.
	waitBatch(t, gwURL, batchID, func(b batchView) bool { return b.RequestCounts.Completed >= n/5 })
	for _, p := range []*exec.Cmd{gw, worker} {
		p.Process.Signal(syscall.SIGKILL)
		p.Wait()
	}
	mu.Lock()
	before := len(runs)
	mu.Unlock()
	if before >= n {
		t.Fatalf("the batch finished before the kill (%d of %d ran): make it longer", before, n)
	}
	t.Logf("killed with %d of %d requests run", before, n)

	gw, worker = start()
	defer func() {
		for _, p := range []*exec.Cmd{gw, worker} {
			p.Process.Signal(syscall.SIGTERM)
			p.Wait()
		}
	}()
	b := waitBatch(t, gwURL, batchID, func(b batchView) bool { return b.Status == "completed" })
	if b.RequestCounts.Total != n || b.RequestCounts.Completed != n || b.RequestCounts.Failed != 0 || b.ErrorFileID != nil {
		t.Fatalf("batch after restart: %+v", b)
	}
	out := getBody(t, gwURL+"/v1/files/"+*b.OutputFileID+"/content")
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var o struct {
			CustomID string `json:"custom_id"`
			Response struct {
				StatusCode int `json:"status_code"`
			} `json:"response"`
		}
		if err := json.Unmarshal([]byte(line), &o); err != nil || o.Response.StatusCode != 200 {
			t.Fatalf("output line %q: %v", line, err)
		}
		seen[o.CustomID]++
	}
	dups := 0
	mu.Lock()
	for i := range n {
		if c := seen[fmt.Sprintf("r%d", i)]; c != 1 {
			t.Errorf("r%d reported %d times, want exactly once", i, c)
		}
		r := runs[fmt.Sprintf("q%d", i)]
		if r == 0 {
			t.Errorf("q%d never ran", i)
		}
		dups += r - 1
	}
	mu.Unlock()
	if len(seen) != n {
		t.Fatalf("output has %d distinct requests, want %d", len(seen), n)
	}
	t.Logf("all %d reported once; %d re-executions of jobs running at the kill", n, dups)
}

type batchView struct {
	Status        string  `json:"status"`
	OutputFileID  *string `json:"output_file_id"`
	ErrorFileID   *string `json:"error_file_id"`
	RequestCounts struct {
		Total, Completed, Failed int
	} `json:"request_counts"`
}

func waitBatch(t *testing.T, gwURL, id string, done func(batchView) bool) batchView {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var b batchView
	for time.Now().Before(deadline) {
		if err := json.Unmarshal([]byte(getBody(t, gwURL+"/v1/batches/"+id)), &b); err == nil && done(b) {
			return b
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("batch %s: still %+v", id, b)
	return b
}

func startProc(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never became ready", url)
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func postJSON(t *testing.T, url, body string) string {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

func jsonField(t *testing.T, body, field string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	s, _ := m[field].(string)
	if s == "" {
		t.Fatalf("no %s in %s", field, body)
	}
	return s
}

func uploadBatchFile(t *testing.T, gwURL string, data []byte) string {
	t.Helper()
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", "batch.jsonl")
	fw.Write(data)
	mw.Close()
	resp, err := http.Post(gwURL+"/v1/files", mw.FormDataContentType(), &form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("upload: %d %s", resp.StatusCode, b)
	}
	return jsonField(t, string(b), "id")
}
