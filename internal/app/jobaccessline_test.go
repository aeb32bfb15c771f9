package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/telemetry"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// The access line of an async submission (202) names the job it queued:
// the job's runs are logged under request ids <job>-<attempt>, and the
// submission's line was the only one with the client's X-Request-Id, with
// no job id, so an operator holding the id a client quotes could not find
// what became of its job.
func TestAsyncSubmissionAccessLineNamesTheJob(t *testing.T) {
	be, _ := countingBackend(t)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf(`listen: 127.0.0.1:0
`+noProbes+`queue:
  data_dir: %s
models:
  - name: m
    backends:
      - url: %s
`, t.TempDir(), be.URL)
	writeFile(t, path, src)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	log, err := telemetry.NewLogger(logs, "info")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Source{Path: path}, log)
	if err != nil {
		t.Fatal(err)
	}
	url, _ := serveApp(t, a)

	code, h, b := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"later"}]}`),
		"Prefer", "respond-async", "X-Request-Id", "client-req-7")
	if code != http.StatusAccepted {
		t.Fatalf("submit: %d %s", code, b)
	}
	id := strings.TrimPrefix(h.Get("Location"), "/v1/jobs/")
	pollJSON(t, url+"/v1/jobs/"+id, func(m map[string]any) bool { return m["status"] == "succeeded" })

	var submitted, ran map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) != nil || rec["msg"] != "request" {
			continue
		}
		switch {
		case rec["request_id"] == "client-req-7":
			submitted = rec
		case strings.HasPrefix(fmt.Sprint(rec["request_id"]), id+"-"):
			ran = rec
		}
	}
	if submitted == nil || ran == nil {
		t.Fatalf("submission line %v, run line %v:\n%s", submitted, ran, logs.String())
	}
	if submitted["status"] != float64(http.StatusAccepted) || submitted["job"] != id {
		t.Fatalf("submission line %v: want status 202 and job %q", submitted, id)
	}
	if sent, _ := ran["bytes_sent"].(float64); sent <= 0 {
		t.Fatalf("the run's line %v: bytes_sent of the answer the job keeps missing", ran)
	}
}
