package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fastConfig is a small, quick engine for tests that don't probe timing.
func fastConfig() Config {
	return Config{
		DecodeStepBase:   time.Millisecond,
		DecodeStepPerSeq: time.Microsecond,
		Seed:             42,
	}
}

// startSim serves a simulator on a real loopback listener. Cleanups run in
// reverse order, so the simulator closes (failing hung requests) before the
// HTTP server waits for its handlers.
func startSim(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	s := New(cfg)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	t.Cleanup(s.Close)
	return s, ts.URL
}

func post(t testing.TB, ctx context.Context, url, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return resp
}

// postRead posts and returns status and body.
func postRead(t testing.TB, url, body string) (int, []byte) {
	t.Helper()
	status, b, err := tryPost(url, body)
	if err != nil {
		t.Fatal(err)
	}
	return status, b
}

// tryPost is postRead for goroutines other than the test's own, which must
// not call t.Fatal.
func tryPost(url, body string) (int, []byte, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, b, fmt.Errorf("reading %s: %w", url, err)
	}
	return resp.StatusCode, b, nil
}

func getRead(t testing.TB, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// waitFor polls cond until it holds, failing after a generous bound. Tests
// wait on conditions, never on sleeps sized to the engine's timing.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func chatBody(prompt string, maxTokens int, extra string) string {
	p, _ := json.Marshal(prompt)
	return fmt.Sprintf(`{"model":"sim-model","messages":[{"role":"user","content":%s}],"max_tokens":%d%s}`, p, maxTokens, extra)
}

// words returns a prompt of n distinct words.
func words(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s%d ", prefix, i)
	}
	return b.String()
}

// sseEvents splits a complete SSE body into event payloads, checking the
// framing byte by byte: every event is exactly "data: PAYLOAD\n\n".
func sseEvents(t testing.TB, body []byte) []string {
	t.Helper()
	s := string(body)
	if !strings.HasSuffix(s, "\n\n") {
		t.Fatalf("stream does not end with a blank line: %q", tail(s))
	}
	var out []string
	for _, ev := range strings.Split(strings.TrimSuffix(s, "\n\n"), "\n\n") {
		p, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(p, "\n") {
			t.Fatalf("bad SSE event framing: %q", ev)
		}
		out = append(out, p)
	}
	return out
}

func tail(s string) string {
	if len(s) > 200 {
		return "…" + s[len(s)-200:]
	}
	return s
}

// readEvent reads one SSE event from a live stream.
func readEvent(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	blank, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if blank != "\n" {
		return "", fmt.Errorf("event not followed by a blank line: %q", blank)
	}
	return strings.TrimSuffix(line, "\n"), nil
}

type chunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"delta"`
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %q: %v", b, err)
	}
	return v
}
