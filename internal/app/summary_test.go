package app

import (
	"fmt"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// startLoggedApp runs the config at path with its log going to the
// returned buffer.
func startLoggedApp(t *testing.T, path string) (*App, string, *logbuf.Buffer) {
	t.Helper()
	a, logs := newLoggedApp(t, path, config.Load)
	url, _, cancel, done := runApp(t, a)
	t.Cleanup(func() { cancel(); <-done })
	return a, url, logs
}

func waitLog(t *testing.T, logs *logbuf.Buffer, wants ...string) {
	t.Helper()
	eventually(t, fmt.Sprintf("log lines %q", wants), func() bool {
		out := logs.String()
		for _, w := range wants {
			if !strings.Contains(out, w) {
				return false
			}
		}
		return true
	})
}

// At start the log says what is served and how; an ejection, the
// recovery from it and a pool change by reload are logged as they happen.
func TestStartupSummaryAndStateChangesLogged(t *testing.T) {
	live := backend(t, "live")
	dead := closedBackendURL(t)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(deadLine string) {
		src := fmt.Sprintf(`listen: 127.0.0.1:0
log: {access: false}
queue: {enabled: false}
health: {max_fails: 1, fail_timeout: 1s}
retry: {attempts: 1}
models:
  - name: chat
    policy: round_robin
    backends:
      - url: %s
        engine: ollama
%s    fallbacks: [other]
  - name: other
    max_wait: 3s
    backends:
      - url: %s
        api_key: k
`, live.URL, deadLine, live.URL)
		writeAtomic(t, path, src)
	}
	write("      - url: " + dead + "\n        engine: ollama\n")
	a, url, logs := startLoggedApp(t, path)
	deadName := strings.TrimPrefix(dead, "http://")
	liveName := strings.TrimPrefix(live.URL, "http://")

	waitLog(t, logs,
		`msg="serving model" model=chat policy=round_robin backends="[`+liveName+` (ollama, not probed) `+deadName+` (ollama, not probed)]" fallbacks=[other] admission=on max_wait=2s max_wait_batch=5m0s`,
		`msg="serving model" model=other policy=p2c_ewma backends="[`+liveName+` (engine unset, not probed)]" admission=on max_wait=3s`,
		`msg="job queue" mode=off`,
		`msg="sluice ready to serve"`, `admin=http://127.0.0.1:`, `active_health_checks="every 5s at /health (by engine)"`)

	// Round robin sends one of the first two requests to the dead backend:
	// max_fails 1 ejects it.
	chat(url, "chat")
	chat(url, "chat")
	waitLog(t, logs, `msg="backend ejected: passive health check" model=chat backend=`+deadName)
	waitLog(t, logs, `msg="backend back from ejection" model=chat backend=`+deadName) // fail_timeout 1s later

	write("")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, `msg="config reload: pool changed" model=chat added=[] added_count=0 removed=[`+deadName+`] removed_count=1 backends=1`)
}
