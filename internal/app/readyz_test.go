package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

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
// internal/gateway's TestReadyzWhileAnyModelCanServe.) The wait for the
// probe verdict is bounded by the checker's worst case, not by a guess at
// the machine's speed (probedWithin).
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
	writeFile(t, path, src)
	a := newApp(t, path)
	url, _, cancel, done := runApp(t, a)
	defer func() { cancel(); <-done }()
	defer func() {
		if t.Failed() {
			t.Logf("probes counted neither way as the gateway's stall: %v",
				counterValue(t, a, "sluice_health_probes_discounted_total"))
		}
	}()

	var last readyz
	eventuallyWithin(t, "the dead backend probed down", probedWithin, func() bool {
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

// probedWithin bounds a wait for the default active check's verdict on a
// dead backend: a hang guard, not the expected time (two rounds, 5 s).
// On a starved gateway (a loaded machine, the race detector) a probe of
// even a refusing port can end past its 2 s timeout before its dial ran;
// such probes are counted neither way (health's stall rule), up to 3 in a
// row per backend, so fails: 2 may take 2*(3+1) rounds of 5 s, 40 s and
// more with late rounds, where eventually's 30 s failed this test once at
// load ~30 (flakes3). Two minutes is three times the worst case's ticks.
const probedWithin = 2 * time.Minute

// closedBackendURL is a loopback URL nothing listens on: port 1, which no
// test binds (an unprivileged one cannot). A port freed by closing a
// server is back in the ephemeral range, where another test on the
// machine may listen next: answered 404 there, the guessed probe plan
// turns the dead backend's probing off for good; 200, it is healthy.
func closedBackendURL(t *testing.T) string {
	t.Helper()
	return "http://127.0.0.1:1"
}
