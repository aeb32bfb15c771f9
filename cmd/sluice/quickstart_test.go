package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `sluice serve` with nothing to serve (no --config, --model, --backend)
// starts the built-in simulator and says, on stdout, where it listens,
// where its data directory is and a curl to try; that curl, /v1/models
// and a stream sent as openai-python sends it are answered. It used to
// exit 2: "need --config FILE, or --model and at least one --backend".
func TestServeWithNothingServesTheSimulator(t *testing.T) {
	bin := sluiceBinary(t)
	dataDir := t.TempDir()
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--data-dir", dataDir, "--log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})

	// The banner, up to the line that names what stops it.
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	var banner []string
	for line := range lines {
		banner = append(banner, line)
		if strings.Contains(line, "Ctrl-C") {
			break
		}
	}
	text := strings.Join(banner, "\n")
	if !strings.Contains(text, "Ctrl-C") {
		t.Fatalf("serve with no config printed no banner; stdout:\n%s\nstderr:\n%s", text, stderr.String())
	}
	go func() { // the rest of stdout, so the process never blocks on it
		for range lines {
		}
	}()
	for _, want := range []string{`model "sim-model"`, "listening on  127.0.0.1:", "data dir      " + dataDir, "curl http://127.0.0.1:", "admin         http://127.0.0.1:"} {
		if !strings.Contains(text, want) {
			t.Errorf("banner lacks %q:\n%s", want, text)
		}
	}
	m := regexp.MustCompile(`OpenAI API: (http://\S+/v1)\)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("banner names no API URL:\n%s", text)
	}
	api := m[1]

	post := func(body string, header http.Header) *http.Response {
		t.Helper()
		req, err := http.NewRequest("POST", api+"/chat/completions", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// The banner's curl.
	resp := post(`{"model":"sim-model","messages":[{"role":"user","content":"Hello"}]}`, http.Header{})
	var chat struct {
		Choices []struct {
			Message struct{ Content string }
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&chat)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil || len(chat.Choices) != 1 || chat.Choices[0].Message.Content == "" {
		t.Fatalf("the banner's curl: %d %v %+v", resp.StatusCode, err, chat)
	}

	models, err := http.Get(api + "/models")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(models.Body)
	models.Body.Close()
	if models.StatusCode != 200 || !strings.Contains(string(b), `"id": "sim-model"`) {
		t.Fatalf("/v1/models: %d %s", models.StatusCode, b)
	}

	// A stream with the headers openai-python sends (its key is any key:
	// the gateway runs in open mode).
	resp = post(`{"model":"sim-model","messages":[{"role":"user","content":"Hello"}],"stream":true,"max_tokens":3}`, http.Header{
		"Accept":                  {"application/json"},
		"Authorization":           {"Bearer sk-anything"},
		"User-Agent":              {"OpenAI/Python 1.99.0"},
		"X-Stainless-Lang":        {"python"},
		"X-Stainless-Retry-Count": {"0"},
	})
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") ||
		strings.Count(string(b), `"chat.completion.chunk"`) < 3 || !strings.HasSuffix(strings.TrimSpace(string(b)), "data: [DONE]") {
		t.Fatalf("stream: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}

	// SIGTERM stops the gateway and its simulators: exit 0 (or a stop
	// given up past the job queue's wall-clock bound, logged).
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err := serveStopErr(t, err, stderr.String()); err != nil {
			t.Fatalf("after SIGTERM: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(2 * time.Minute): // a bound for a hung process, not a speed check
		t.Fatalf("still running 2 minutes after SIGTERM\nstderr:\n%s", stderr.String())
	}
}
