package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeTrace writes a small Azure-format trace: n requests 50 ms apart with
// modest sizes, so the smoke test needs no file from outside the repository.
func writeTrace(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("TIMESTAMP,ContextTokens,GeneratedTokens\n")
	t0 := time.Date(2023, 11, 16, 18, 15, 46, 0, time.UTC)
	for i := range n {
		at := t0.Add(time.Duration(i) * 50 * time.Millisecond)
		fmt.Fprintf(&b, "%s,%d,%d\n", at.Format("2006-01-02 15:04:05.0000000"), 200+7*(i%50), 20+i%30)
	}
	path := filepath.Join(t.TempDir(), "trace.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSmoke runs the replay scenario for one short leg per path and checks
// that the harness produces its tables and a consistent report.
func TestSmoke(t *testing.T) {
	opt := options{
		Traces: []string{writeTrace(t, 2000)}, Backends: 1, Duration: time.Second, Loads: []float64{2},
		Flood: 2, Behave: 0.15, Behaving: 3, TokenScale: 0.25, MaxInput: 1024, MaxOutput: 256,
		SLO: 2 * time.Second, Replay: true, Sim: simConfig(), Command: "go test",
	}
	var out strings.Builder
	rep, err := run(context.Background(), opt, &out)
	if err != nil {
		t.Fatal(err)
	}
	md := out.String()
	for _, want := range []string{"### Trace replay", "| 2x | round robin |", "| 2x | Sluice |", "### Diagnostics", "### Targets", "`go test`"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if len(rep.Replay) != 2 {
		t.Fatalf("got %d replay legs, want 2", len(rep.Replay))
	}
	for _, l := range rep.Replay {
		if l.Requests == 0 || l.Bench.Sent != l.Requests {
			t.Errorf("%s: planned %d, sent %d", l.Path, l.Requests, l.Bench.Sent)
		}
		if l.Bench.OK == 0 {
			t.Errorf("%s: nothing served", l.Path)
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("report does not marshal: %v", err)
	}
}

func TestMaxMinShares(t *testing.T) {
	got := maxMinShares(100, []float64{10, 20, 500, 0, 60})
	want := []float64{10, 20, 35, 0, 35}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Fatalf("maxMinShares = %v, want %v", got, want)
		}
	}
}

func TestCapacityMatchesSimulatorAtWholeTokens(t *testing.T) {
	c := simConfig()
	want, _ := c.Capacity(200, 45)
	if got := benchkit.Capacity(c, 200, 45); math.Abs(got-want) > 1e-9 {
		t.Fatalf("capacity(200, 45) = %v, want %v", got, want)
	}
	lo, _ := c.Capacity(200, 45)
	hi, _ := c.Capacity(200, 46)
	if got := benchkit.Capacity(c, 200, 45.5); !(got < lo && got > hi) {
		t.Fatalf("capacity(200, 45.5) = %v, not between %v and %v", got, hi, lo)
	}
}

func TestTraceSliceHitsTheRate(t *testing.T) {
	opt := options{Traces: []string{writeTrace(t, 2000)}, Backends: 3, Duration: 2 * time.Second, Loads: []float64{1, 3},
		Flood: 3, TokenScale: 0.25, MaxInput: 1024, MaxOutput: 256, Sim: simConfig()}
	h := &harness{opt: opt}
	if err := h.load(); err != nil {
		t.Fatal(err)
	}
	for _, k := range opt.Loads {
		arr, _, err := h.traceSlice(k)
		if err != nil {
			t.Fatal(err)
		}
		if want := int(math.Round(k * h.capRPS * opt.Duration.Seconds())); len(arr) != want {
			t.Errorf("%gx: %d requests, want %d", k, len(arr), want)
		}
		if last := arr[len(arr)-1].At; last >= opt.Duration || last < opt.Duration*9/10 {
			t.Errorf("%gx: last arrival at %s, want just under %s", k, last, opt.Duration)
		}
	}
}
