package app

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/sim"
)

// examples/sluice.yaml runs as it is on one machine: every backend is on
// loopback (127.0.0.1:9001-9003, the simulators its header says to start).
// The test starts those simulators on free ports, changes only the ports
// in the file, and sends requests through the app it builds: to each
// model, and to the first one after its servers died (served by its
// fallback, a loopback server too).
func TestExampleConfigRunsOnOneMachine(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := sim.Config{Model: "llama-3-8b", Instant: true}
	ctx := context.Background()
	primary, stopPrimary, err := sim.ListenAndServeN(ctx, "127.0.0.1:0", 2, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopPrimary)
	overflow, stopOverflow, err := sim.ListenAndServeN(ctx, "127.0.0.1:0", 1, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopOverflow)

	text := string(src)
	for port, url := range map[string]string{"9001": primary[0], "9002": primary[1], "9003": overflow[0]} {
		old := "http://127.0.0.1:" + port
		if !strings.Contains(text, old) {
			t.Fatalf("examples/sluice.yaml has no backend %s any more: update this test", old)
		}
		text = strings.ReplaceAll(text, old, url)
	}
	for _, line := range strings.Split(text, "\n") {
		code, _, _ := strings.Cut(line, "#")
		if strings.Contains(code, "://") && !strings.Contains(code, "://127.0.0.1") {
			t.Fatalf("examples/sluice.yaml reaches beyond this machine: %q", strings.TrimSpace(line))
		}
	}
	t.Setenv("XDG_DATA_HOME", t.TempDir()) // the embedded queue's default data directory
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, path, text)
	url, _, stop, done := startAppAdmin(t, path)
	t.Cleanup(func() { stop(); <-done })

	served := func(model string) (int, string) {
		resp, err := http.Post(url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Sluice-Model")
	}
	for _, model := range []string{"llama-3-8b", "llama-3-8b-hosted"} {
		if code, by := served(model); code != 200 || by != model {
			t.Fatalf("%s: %d served by %q", model, code, by)
		}
	}
	stopPrimary()
	eventually(t, "llama-3-8b served by its fallback", func() bool {
		code, by := served("llama-3-8b")
		return code == 200 && by == "llama-3-8b-hosted"
	})
}
