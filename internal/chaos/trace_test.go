package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTraceJoinsAccessLog: a traced request is written with what the
// gateway's access line says about it (backend, attempts, hedge, queue
// wait); one the log does not know is written with dashes, and lines that
// are not access lines are skipped.
func TestTraceJoinsAccessLog(t *testing.T) {
	dir := t.TempDir()
	log := `{"msg":"starting"}
{"msg":"request","request_id":"r1","backend":"127.0.0.1:9001","attempts":2,"hedge":"won","queued_ms":1.5,"ttft_ms":40.2}
not json
`
	if err := os.WriteFile(filepath.Join(dir, "gateway.log"), []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := &tracer{start: time.Unix(0, 0)}
	tr.entries = []traceEntry{
		{at: 200 * time.Millisecond, ttft: 90 * time.Millisecond, out: served, id: "r2"},
		{at: 100 * time.Millisecond, ttft: 41 * time.Millisecond, out: served, id: "r1"},
	}
	tr.status = []statusLine{{at: 150 * time.Millisecond, text: "queue 1/24+0"}}
	var b strings.Builder
	writeTrace(&b, "backend-slow", []string{"http://127.0.0.1:9001"}, dir, map[string]*tracer{"attack": tr})
	want := []string{
		"backend-slow attack 100 41 served 127.0.0.1:9001 2 won 1.5 40.2 r1",
		"backend-slow attack 200 90 served - 0 - 0.0 0.0 r2",
		"backend-slow attack status 150 queue 1/24+0",
	}
	got := b.String()
	for _, w := range want {
		if !strings.Contains(got, w+"\n") {
			t.Errorf("trace lacks %q:\n%s", w, got)
		}
	}
	if strings.Index(got, " r1\n") > strings.Index(got, " r2\n") {
		t.Errorf("entries not in the order they were sent:\n%s", got)
	}
}
