package demo

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDemoPrintsTable runs a short demo end to end: simulators, the plain
// proxy, the gateway, the scale-out leg's actuator and the three replays.
// The load is twice the fixed pool's capacity and the scale-out leg starts
// with one server, so its signal must ask for more whatever the machine's
// speed: the test checks that a backend was added, not when.
func TestDemoPrintsTable(t *testing.T) {
	var out, progress bytes.Buffer
	rep, err := Run(context.Background(), Options{Backends: 2, ScaleFrom: 1, LegDuration: 4 * time.Second,
		Load: 2, ProgressEvery: time.Second, Progress: &progress}, &out)
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range append(RowNames(), "Before / after", "plain round robin", "Sluice + predictive scale-out") {
		if !strings.Contains(text, want) {
			t.Fatalf("missing %q in\n%s", want, text)
		}
	}
	// The header says the replay is a thinned excerpt, not the trace
	// (it read "Load: 896 requests", the excerpt having 5,550).
	if !strings.Contains(text, " of the trace's 5550 requests (thinned evenly") {
		t.Fatalf("the header does not say the trace was thinned:\n%s", text)
	}
	if len(rep.Legs) != 3 {
		t.Fatalf("%d legs, want 3", len(rep.Legs))
	}
	for _, l := range rep.Legs {
		if l.Result.Offered == 0 || l.Result.Offered != rep.Legs[0].Result.Offered {
			t.Fatalf("leg %q offered %d requests, the first %d: want the same non-zero load", l.Name, l.Result.Offered, rep.Legs[0].Result.Offered)
		}
		if l.Result.OK == 0 {
			t.Fatalf("nothing served in leg %q", l.Name)
		}
	}
	so := rep.Legs[2]
	if len(so.ScaleOut) == 0 || so.PeakBackends <= so.FirstBackends {
		t.Fatalf("the scale-out leg added no backend (events %+v, backends %d -> %d)\nprogress:\n%s", so.ScaleOut, so.FirstBackends, so.PeakBackends, progress.String())
	}
	if !strings.Contains(progress.String(), "served") {
		t.Fatalf("no progress line in %q", progress.String())
	}
	var md bytes.Buffer
	if err := rep.WriteTable(&md, true); err != nil {
		t.Fatal(err)
	}
	if got := tableRows(md.String()); !slices.Equal(got, RowNames()) {
		t.Fatalf("markdown rows %q, want %q", got, RowNames())
	}
}

// TestReadmeTableHasTheDemoRows keeps the README's sample table tied to
// the code: the rows between its demo-table markers are the ones the demo
// prints (the numbers come from a run: scripts/demo-readme.sh).
func TestReadmeTableHasTheDemoRows(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, readmeStart), strings.Index(s, readmeEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no %s ... %s block", readmeStart, readmeEnd)
	}
	block := s[i+len(readmeStart) : j]
	if got := tableRows(block); !slices.Equal(got, RowNames()) {
		t.Fatalf("README demo table rows %q, want the demo's %q: run scripts/demo-readme.sh", got, RowNames())
	}
	for _, leg := range []string{"plain round robin", "Sluice", "Sluice + predictive scale-out"} {
		if !strings.Contains(block, "| "+leg+" |") {
			t.Fatalf("README demo table has no %q column", leg)
		}
	}
}

// The markers around the README's sample table (scripts/demo-readme.sh
// replaces what is between them).
const (
	readmeStart = "<!-- demo-table:start -->"
	readmeEnd   = "<!-- demo-table:end -->"
)

// tableRows is the first cell of every body row of a Markdown table.
func tableRows(md string) []string {
	var out []string
	for _, line := range strings.Split(md, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "| |") || strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) > 2 {
			out = append(out, strings.TrimSpace(cells[1]))
		}
	}
	return out
}
