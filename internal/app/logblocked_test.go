package app

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// stuckOutput is a log output that takes no writes until released: a full
// log pipe nobody reads.
type stuckOutput struct {
	release chan struct{}
	once    sync.Once
}

func (s *stuckOutput) Write(p []byte) (int, error) { <-s.release; return len(p), nil }
func (s *stuckOutput) unblock()                    { s.once.Do(func() { close(s.release) }) }

// TestAccessLogBlockedOutputStillAnswers: with the access log on and the
// log output taking no writes, requests logging far more than the 64 KiB
// batch are all answered, and /metrics shows the log bytes waiting. Before
// the log writer stopped writing under its lock, the request that found
// its buffer full blocked in write(2) and every one after it on the lock.
func TestAccessLogBlockedOutputStillAnswers(t *testing.T) {
	be := backend(t, "b")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: true}\nqueue: {enabled: false}\nmodels:\n  - name: m\n    backends:\n      - url: %s\n", be.URL)
	writeFile(t, path, src)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	out := &stuckOutput{release: make(chan struct{})}
	logger, logBuf := telemetry.NewBufferedLogger(out, slog.LevelInfo, time.Hour)
	t.Cleanup(func() { out.unblock(); logBuf.Close() }) // runs after the app stops
	a, err := New(cfg, Source{Path: path, LogMetrics: logBuf.Collector()}, logger)
	if err != nil {
		t.Fatal(err)
	}
	url, admin := serveApp(t, a)

	const requests = 1000 // a few hundred bytes of access line each
	answered := make(chan int, 1)
	go func() {
		n := 0
		for i := 0; i < requests; i++ {
			if code, _ := chat(url, "m"); code == http.StatusOK {
				n++
			}
		}
		answered <- n
	}()
	select {
	case n := <-answered:
		if n != requests {
			t.Fatalf("%d of %d requests answered 200", n, requests)
		}
	case <-time.After(2 * time.Minute): // a bound on a hang, not a timing
		t.Fatal("requests hung behind the blocked log output")
	}
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var buffered float64
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "sluice_log_buffered_bytes ") {
			fmt.Sscan(strings.TrimPrefix(l, "sluice_log_buffered_bytes "), &buffered)
		}
	}
	if buffered < 64<<10 || !strings.Contains(string(body), "sluice_log_lines_dropped_total 0") {
		t.Fatalf("log metrics: buffered %v bytes (want over 64 KiB waiting), dropped total in:\n%s", buffered, grepLines(string(body), "sluice_log_"))
	}
}

func grepLines(s, prefix string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
