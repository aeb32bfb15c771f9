package app

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
)

const hookSecret = "s3cret"

// startQueueApp runs a gateway with the embedded job queue in a temp dir.
func startQueueApp(t *testing.T, backend string) string {
	t.Helper()
	return startQueueAppWith(t, backend, "data_dir: "+t.TempDir())
}

// startQueueAppWith runs a gateway with the job queue as queueLine says
// until the test ends; an error from Run fails the test, but for a stop
// given up past its bound (stopErr).
func startQueueAppWith(t *testing.T, backend, queueLine string) string {
	t.Helper()
	return startQueueAppStopping(t, backend, queueLine, 0)
}

// startQueueAppStopping is startQueueAppWith for a test asserting a clean
// stop: with cleanWithin set, the job queue's stop gets that bound
// (App.queueStopBase; room a loaded machine does not pass) and a stop given
// up past it fails the test too.
func startQueueAppStopping(t *testing.T, backend, queueLine string, cleanWithin time.Duration) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf(`listen: 127.0.0.1:0
log: {access: false}
queue:
  %s
  webhook_secret: %s
  allow_private_webhooks: true
`+noProbes+`models:
  - name: m
    backends:
      - url: %s
`, queueLine, hookSecret, backend)
	writeFile(t, path, src)
	a := newApp(t, path)
	if cleanWithin > 0 {
		a.queueStopBase = cleanWithin
	}
	url, _, stop, done := runApp(t, a)
	t.Cleanup(func() {
		stop()
		err := <-done
		if cleanWithin == 0 {
			err = stopErr(t, err)
		}
		if err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return url
}

func do(t *testing.T, method, url, ctype string, body io.Reader, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// doFrom is do from another loopback source address (another client).
func doFrom(t *testing.T, src, method, url string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// pollJSON polls url until done accepts its JSON answer.
// The deadline only bounds a failing run: a job whose message a server
// shutdown took comes back after AckWait (15 s), and a loaded machine can
// stretch that past 30 s without anything being wrong.
func pollJSON(t *testing.T, url string, done func(m map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, _, b := do(t, http.MethodGet, url, "", nil)
		var m map[string]any
		if code == 200 && json.Unmarshal(b, &m) == nil && done(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: still %d %s", url, code, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAsyncJobWithWebhookAndIdempotency(t *testing.T) {
	be, calls := countingBackend(t)
	hooks := make(chan *http.Request, 4)
	hookBodies := make(chan []byte, 4)
	hook := httptestServerFunc(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hooks <- r
		hookBodies <- b
	})
	url := startQueueApp(t, be.URL)
	body := `{"model":"m","messages":[{"role":"user","content":"later"}]}`

	code, h, b := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(body),
		"Prefer", "respond-async", "Idempotency-Key", "k1", "X-Sluice-Webhook", hook)
	if code != http.StatusAccepted || !strings.HasPrefix(h.Get("Location"), "/v1/jobs/") {
		t.Fatalf("submit: %d %v %s", code, h, b)
	}
	loc := h.Get("Location")
	// The same Idempotency-Key returns the same job.
	code, h2, _ := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(body),
		"Prefer", "respond-async", "Idempotency-Key", "k1")
	if code != http.StatusAccepted || h2.Get("Location") != loc {
		t.Fatalf("resubmit: %d %s, want the same job %s", code, h2.Get("Location"), loc)
	}
	job := pollJSON(t, url+loc, func(m map[string]any) bool { return m["status"] == "succeeded" })
	res, _ := job["result"].(map[string]any)
	if res == nil || res["status_code"] != float64(200) || !strings.Contains(fmt.Sprint(res["body"]), "chat.completion") {
		t.Fatalf("job result: %v", job)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("backend calls %d, want 1 (one job for two submissions)", n)
	}
	select {
	case r := <-hooks:
		hb := <-hookBodies
		sig := r.Header.Get("X-Sluice-Signature")
		var ts, v1 string
		for _, part := range strings.Split(sig, ",") {
			if k, v, ok := strings.Cut(part, "="); ok && k == "t" {
				ts = v
			} else if ok && k == "v1" {
				v1 = v
			}
		}
		mac := hmac.New(sha256.New, []byte(hookSecret))
		mac.Write([]byte(ts + "."))
		mac.Write(hb)
		if want := hex.EncodeToString(mac.Sum(nil)); v1 != want || !bytes.Contains(hb, []byte(`"succeeded"`)) {
			t.Fatalf("webhook signature %q (want v1=%s) body %s", sig, want, hb)
		}
	case <-time.After(time.Minute): // a hang guard: delivery runs through the queue
		t.Fatal("no webhook")
	}
	// Another tenant cannot see the job: with no keys configured, tenants
	// are client addresses, and an invented key makes nobody else.
	if code, _, _ := doFrom(t, "127.0.0.2", http.MethodGet, url+loc, "Authorization", "Bearer other"); code != 404 {
		t.Fatalf("other tenant: %d", code)
	}
	if code, _, _ := do(t, http.MethodGet, url+loc, "", nil, "Authorization", "Bearer invented"); code != 200 {
		t.Fatalf("same address, invented key: %d, want the same tenant", code)
	}
}

func TestBatchThroughTheGateway(t *testing.T) {
	be, calls := countingBackend(t)
	url := startQueueApp(t, be.URL)
	var in bytes.Buffer
	const n = 30
	for i := range n {
		fmt.Fprintf(&in, `{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"q%d"}]}}`+"\n", i, i)
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", "in.jsonl")
	fw.Write(in.Bytes())
	mw.Close()
	code, _, b := do(t, http.MethodPost, url+"/v1/files", mw.FormDataContentType(), &form)
	var file struct{ ID string }
	if code != 200 || json.Unmarshal(b, &file) != nil || file.ID == "" {
		t.Fatalf("upload: %d %s", code, b)
	}
	code, _, b = do(t, http.MethodPost, url+"/v1/batches", "application/json",
		strings.NewReader(`{"input_file_id":"`+file.ID+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`))
	var batch struct{ ID string }
	if code != 200 || json.Unmarshal(b, &batch) != nil {
		t.Fatalf("create batch: %d %s", code, b)
	}
	done := pollJSON(t, url+"/v1/batches/"+batch.ID, func(m map[string]any) bool { return m["status"] == "completed" })
	counts, _ := done["request_counts"].(map[string]any)
	if counts["total"] != float64(n) || counts["completed"] != float64(n) || counts["failed"] != float64(0) {
		t.Fatalf("counts: %v", done)
	}
	out, _ := done["output_file_id"].(string)
	code, _, b = do(t, http.MethodGet, url+"/v1/files/"+out+"/content", "", nil)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if code != 200 || len(lines) != n {
		t.Fatalf("output: %d, %d lines", code, len(lines))
	}
	for i, l := range lines {
		var o struct {
			CustomID string `json:"custom_id"`
			Response struct {
				StatusCode int `json:"status_code"`
			} `json:"response"`
		}
		if json.Unmarshal([]byte(l), &o) != nil || o.CustomID != fmt.Sprintf("r%d", i) || o.Response.StatusCode != 200 {
			t.Fatalf("line %d: %s", i, l)
		}
	}
	if calls.Load() != n {
		t.Fatalf("backend calls %d, want %d", calls.Load(), n)
	}
	// A compressed body is refused as on the inference routes: 415 naming
	// the header, never read as (invalid) JSON or multipart.
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/batches", strings.NewReader("\x1f\x8b\x08\x00"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(string(b), `"param":"Content-Encoding"`) {
		t.Fatalf("gzip body to /v1/batches: %d %s", resp.StatusCode, b)
	}
}

// With queue.url the gateway uses an external NATS server (here one started
// by the test) instead of embedding its own.
func TestAsyncJobOnExternalNATS(t *testing.T) {
	nats, err := jobs.StartEmbedded(jobs.EmbeddedOptions{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	// A cleanup, not a defer: it runs after the gateway's (cleanups run
	// last first), which stops on a NATS that still answers (a NATS gone
	// first: TestStopWithTheExternalNATSDownIsClean).
	t.Cleanup(func() { nats.Shutdown(); nats.WaitForShutdown() })
	be, _ := countingBackend(t)
	url := startQueueAppWith(t, be.URL, "url: "+nats.ClientURL())
	code, h, b := do(t, http.MethodPost, url+"/v1/embeddings", "application/json",
		strings.NewReader(`{"model":"m","input":"x"}`), "Prefer", "respond-async")
	if code != http.StatusAccepted {
		t.Fatalf("submit: %d %s", code, b)
	}
	pollJSON(t, url+h.Get("Location"), func(m map[string]any) bool { return m["status"] == "succeeded" })
}

// An external NATS that is down at start does not keep the gateway from
// serving: live requests work, async and batch answer 503 with Retry-After,
// and once NATS is up the queue connects by itself.
func TestGatewayStartsWhileExternalNATSIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	be, _ := countingBackend(t)
	url := startQueueAppWith(t, be.URL, fmt.Sprintf("url: nats://127.0.0.1:%d", port))

	body := `{"model":"m","messages":[{"role":"user","content":"x"}]}`
	if code, _, b := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(body)); code != 200 {
		t.Fatalf("live request without the queue: %d %s", code, b)
	}
	code, h, b := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(body), "Prefer", "respond-async")
	if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(string(b), "queue_unavailable") {
		t.Fatalf("async without the queue: %d %v %s", code, h, b)
	}
	if code, _, _ := do(t, http.MethodGet, url+"/v1/batches", "", nil); code != 503 {
		t.Fatalf("batches without the queue: %d", code)
	}

	nats, err := jobs.StartEmbedded(jobs.EmbeddedOptions{Dir: t.TempDir(), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { nats.Shutdown(); nats.WaitForShutdown() }()
	// A hang guard, not a bound on the reconnect: its attempts double from
	// 1 s to 30 s (queueRetryFirst, queueRetryMax): on a loaded machine
	// NATS can come up just after the attempt 15 s into the app's life,
	// and the next is 16 s later, past the 15 s this waited.
	deadline := time.Now().Add(time.Minute)
	for {
		code, h, _ = do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(body), "Prefer", "respond-async")
		if code == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue never connected: %d", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	pollJSON(t, url+h.Get("Location"), func(m map[string]any) bool { return m["status"] == "succeeded" })
}
