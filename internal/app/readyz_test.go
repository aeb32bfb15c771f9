package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-gw/sluice/internal/sim"
)

type readyz struct {
	Ready  bool `json:"ready"`
	Models []struct {
		Model  string         `json:"model"`
		Ready  bool           `json:"ready"`
		Usable int            `json:"usable"`
		States map[string]int `json:"states"`
	} `json:"models"`
}

func getReadyz(t *testing.T, url string) (int, readyz) {
	t.Helper()
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r readyz
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("/readyz body: %v", err)
	}
	return resp.StatusCode, r
}

// With the config's defaults (no health section), the active health
// check finds a backend that is not there before any client request does:
// /readyz reports the model with a dead pool as not ready and the replica
// as ready while the other model can be served; the simulator, a vLLM
// stand-in, passes the probe. (The first probe round runs at start, so
// this waits for no interval; no model servable -> 503 is
// internal/gateway's TestReadyzWhileAnyModelCanServe.)
func TestDefaultActiveChecksFeedReadyz(t *testing.T) {
	simSrv := httptest.NewServer(sim.New(sim.Config{Model: "live", Instant: true}))
	t.Cleanup(simSrv.Close)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf(`listen: 127.0.0.1:0
log: {access: false}
queue: {enabled: false}
models:
  - name: live
    backends:
      - url: %s
        engine: vllm
  - name: dead
    backends:
      - url: %s
`, simSrv.URL, closedBackendURL(t))
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	url, cancel, done := startApp(t, path)
	defer func() { cancel(); <-done }()

	var last readyz
	eventually(t, "the dead backend probed down", func() bool {
		_, last = getReadyz(t, url)
		return len(last.Models) == 2 && last.Models[1].States["down"] == 1
	})
	code, r := getReadyz(t, url)
	if code != 200 || !r.Ready || !r.Models[0].Ready || r.Models[0].States["healthy"] != 1 || r.Models[1].Ready {
		t.Fatalf("/readyz = %d %+v; want 200, live ready, dead not", code, r)
	}
	if st, body := chat(url, "dead"); st != http.StatusServiceUnavailable {
		t.Fatalf("request for the dead model: %d %s, want an OpenAI-shaped 503", st, body)
	}
}

// closedBackendURL is a loopback URL nothing listens on.
func closedBackendURL(t *testing.T) string {
	s := httptest.NewServer(http.NotFoundHandler())
	s.Close()
	return s.URL
}
