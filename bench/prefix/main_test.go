package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
)

// writeTrace writes a small Mooncake-format trace: conversations of a few
// turns, each turn repeating the conversation's earlier blocks and adding
// one, 100 ms apart, so the smoke test needs no file from outside the
// repository.
func writeTrace(t *testing.T, convs, turns int) string {
	t.Helper()
	var b strings.Builder
	for turn := range turns {
		for c := range convs {
			var ids []string
			for k := range 8 + turn {
				ids = append(ids, fmt.Sprint(c*1000+k))
			}
			at := (turn*convs + c) * 100
			fmt.Fprintf(&b, `{"timestamp": %d, "input_length": %d, "output_length": %d, "hash_ids": [%s]}`+"\n",
				at, 512*len(ids), 40, strings.Join(ids, ", "))
		}
	}
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSmoke runs one short leg per policy and checks that the harness
// produces its table and a consistent report.
func TestSmoke(t *testing.T) {
	policies := []string{"least_conn", "prefix_affinity", "prefix_affinity+least_load"}
	opt := options{
		Trace: writeTrace(t, 12, 6), Offset: -1, Requests: 60, Repeat: 2, Backends: 2, Load: 0.5, TokenScale: 0.1,
		SLO: 2 * time.Second, MaxWait: 10 * time.Second, Admission: true, Policies: policies,
		Sim: simConfig(), Command: "go test",
	}
	var out strings.Builder
	rep, err := run(context.Background(), opt, &out)
	if err != nil {
		t.Fatal(err)
	}
	md := out.String()
	for _, want := range []string{"| policy |", "| `least_conn` | 120 |", "| `prefix_affinity` | 120 |",
		"| `prefix_affinity+least_load` | 120 |", "| target (issue 4) |", "`go test`"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if len(rep.Legs) != 2*len(policies) || len(rep.Rows) != len(policies) {
		t.Fatalf("got %d legs and %d rows, want %d and %d", len(rep.Legs), len(rep.Rows), 2*len(policies), len(policies))
	}
	for i, r := range rep.Rows {
		if r.Policy != policies[i] || r.Runs != 2 || r.Requests != 120 || !(r.TTFTMeanMin <= r.TTFTMeanms && r.TTFTMeanms <= r.TTFTMeanMax) {
			t.Errorf("row %d: %s, %d runs, %d requests, mean TTFT %v not within [%v, %v]",
				i, r.Policy, r.Runs, r.Requests, r.TTFTMeanms, r.TTFTMeanMin, r.TTFTMeanMax)
		}
	}
	if s := rep.Setup; s.BlockTokens != 51 || s.SharedBlocks <= 0 || s.WorkingSet <= 0 {
		t.Errorf("setup: block %d tokens, shared %.2f, working set %d", s.BlockTokens, s.SharedBlocks, s.WorkingSet)
	}
	for _, l := range rep.Legs {
		if l.Bench.Sent != l.Requests || l.OK == 0 {
			t.Errorf("%s: planned %d, sent %d, ok %d", l.Policy, l.Requests, l.Bench.Sent, l.OK)
		}
		var served float64
		for _, b := range l.Backends {
			served += b.Served
		}
		// Each answer the client got was served; a hedged stream's
		// losing leg may also have run to its end (a loaded machine
		// hedges: 61 served for 60 answers in a suite run).
		if served < float64(l.OK) || served > float64(l.OK)+l.Hedges {
			t.Errorf("%s: the backends count %v served, the client %d, with %v hedges", l.Policy, served, l.OK, l.Hedges)
		}
		// Every prompt after a conversation's first turn repeats blocks,
		// so some hit whatever the routing.
		if !(l.HitRate > 0 && l.HitRate < 1) {
			t.Errorf("%s: hit rate %v", l.Policy, l.HitRate)
		}
		if l.Imbalance < 1 || l.Imbalance > float64(opt.Backends) || math.IsNaN(l.QueueImbalance) {
			t.Errorf("%s: max/mean served %v, queue %v", l.Policy, l.Imbalance, l.QueueImbalance)
		}
		if !(l.TTFTMeanms > 0) || l.TTFTP99ms < l.TTFTP50ms {
			t.Errorf("%s: TTFT mean %v p50 %v p99 %v", l.Policy, l.TTFTMeanms, l.TTFTP50ms, l.TTFTP99ms)
		}
	}
	if len(rep.Targets) != 2*(len(policies)-1) {
		t.Errorf("got %d targets, want %d", len(rep.Targets), 2*(len(policies)-1))
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("report does not marshal: %v", err)
	}
}

func TestSharedBlocks(t *testing.T) {
	arr := []bench.Arrival{
		{HashIDs: []int{1, 2, 3}},
		{HashIDs: []int{1, 2, 4}}, // shares 2 of 3
		{HashIDs: []int{5, 2, 3}}, // shares none: 2 and 3 follow another prefix
		{HashIDs: []int{1, 2, 3, 6}},
	}
	share, distinct := sharedBlocks(arr)
	if want := 5.0 / 13; math.Abs(share-want) > 1e-9 || distinct != 8 {
		t.Fatalf("sharedBlocks = %v, %d; want %v, 8", share, distinct, want)
	}
}

func TestPlanHitsTheRate(t *testing.T) {
	opt := options{Trace: writeTrace(t, 10, 5), Offset: 5, Requests: 40, Backends: 3, Load: 0.5, TokenScale: 0.1, Sim: simConfig()}
	arr, s, err := plan(opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(arr) != 40 || arr[0].At != 0 {
		t.Fatalf("%d arrivals, first at %s", len(arr), arr[0].At)
	}
	if got := 40 / s.SpanS; math.Abs(got-s.OfferedRPS) > 1e-6 || math.Abs(s.OfferedRPS-0.5*s.CapacityRPS) > 1e-6 {
		t.Errorf("offered %v req/s over %v s, capacity %v", s.OfferedRPS, s.SpanS, s.CapacityRPS)
	}
	if last := time.Duration(s.SpanS * float64(time.Second)); arr[39].At >= last || arr[39].At < last*9/10 {
		t.Errorf("last arrival at %s, want just under %s", arr[39].At, last)
	}
}
