package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
)

// writeMixInputs writes a trace with short and long prompts (every third
// one 1,500 tokens) and a ServeGen directory of three clients.
func writeMixInputs(t *testing.T, n int) (trace, servegen string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("TIMESTAMP,ContextTokens,GeneratedTokens\n")
	t0 := time.Date(2023, 11, 16, 18, 15, 46, 0, time.UTC)
	for i := range n {
		in := 100 + 7*(i%30)
		if i%3 == 0 {
			in = 1500
		}
		fmt.Fprintf(&b, "%s,%d,%d\n", t0.Add(time.Duration(i)*50*time.Millisecond).Format("2006-01-02 15:04:05.0000000"), in, 20+i%40)
	}
	dir := t.TempDir()
	trace = filepath.Join(dir, "trace.csv")
	if err := os.WriteFile(trace, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	servegen = filepath.Join(dir, "servegen")
	if err := os.Mkdir(servegen, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, r := range []float64{6, 3, 1} {
		body := fmt.Sprintf("0,%g,1,Gamma,1,1\n600,%g,1,Gamma,1,1\n", r, r)
		if err := os.WriteFile(filepath.Join(servegen, fmt.Sprintf("chunk-%d-trace.csv", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return trace, servegen
}

// TestMixSmoke runs the mix for one short load, direct and Sluice, and
// checks that every request is counted once in its class and its tenant,
// that both classes and the newcomer's late start are in the plan, and
// that the report has its tables.
func TestMixSmoke(t *testing.T) {
	trace, sg := writeMixInputs(t, 2000)
	opt := options{
		Backends: 1, Duration: time.Second, GoodputDuration: 2 * time.Second, SLO: 2 * time.Second, TokenScale: 0.25,
		Traces: []string{trace}, Mix: true, MixTrace: trace, MixServeGen: sg, MixTenants: 3, MixNoStream: 0.3,
		MixMaxInput: 8192, MixMaxOutput: 512, MixOutputScale: 0.25, MixLoads: []float64{1.5}, MixRegimes: []string{regimeShed},
		MixTPOT: 50 * time.Millisecond, Sim: simConfig(), Command: "go test",
	}
	var out strings.Builder
	rep, err := run(context.Background(), opt, &out)
	if err != nil {
		t.Fatal(err)
	}
	md := out.String()
	for _, want := range []string{"#### Mix, regime shed", "| 1.5x | direct | stream, long |", "| 1.5x | sluice | non-stream, short |",
		"| 1.5x | sluice | t3 (newcomer) |", "| 1.5x | all |", "Refusals with Retry-After by tenant and class"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	m := rep.Mix
	if len(m.Legs) != 2 {
		t.Fatalf("got %d mix legs, want 2", len(m.Legs))
	}
	for _, l := range m.Legs {
		var classes, tenants int
		for _, c := range l.Classes {
			classes += c.Offered
			if c.Offered == 0 {
				t.Errorf("%s: class %s has no request", l.Path, c.Name)
			}
		}
		for _, c := range l.Tenants {
			tenants += c.Offered
		}
		a := l.All
		if classes != a.Offered || tenants != a.Offered || a.InSLO+a.Late+a.RefusedWithRA+a.Unannounced != a.Offered {
			t.Errorf("%s: all %+v, classes %d, tenants %d", l.Path, a, classes, tenants)
		}
		if a.InSLO == 0 {
			t.Errorf("%s: nothing answered in SLO", l.Path)
		}
		// Every refusal is counted under one reason.
		for _, c := range append([]MixCount{a}, l.Tenants...) {
			n := 0
			for _, v := range c.RefusedBy {
				n += v
			}
			if n != c.RefusedWithRA {
				t.Errorf("%s %s: refused %d, by reason %v", l.Path, c.Name, c.RefusedWithRA, c.RefusedBy)
			}
		}
		// Each tenant's requests by class add up to its row.
		if len(l.Cross) != len(l.Tenants)*len(mixClasses) {
			t.Fatalf("%s: %d tenant-class cells, want %d", l.Path, len(l.Cross), len(l.Tenants)*len(mixClasses))
		}
		for ti, tc := range l.Tenants {
			var off, in int
			for _, c := range l.Cross[ti*len(mixClasses) : (ti+1)*len(mixClasses)] {
				off, in = off+c.Offered, in+c.InSLO
			}
			if off != tc.Offered || in != tc.InSLO {
				t.Errorf("%s: %s by class offered %d, in SLO %d; its row %d, %d", l.Path, tc.Name, off, in, tc.Offered, tc.InSLO)
			}
		}
		for _, r := range l.records {
			if r.rec.Tenant == 2 && r.arr.At < opt.GoodputDuration/2 {
				t.Fatalf("%s: the newcomer sent at %s, before half the leg", l.Path, r.arr.At)
			}
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("report does not marshal: %v", err)
	}
}

func TestMixGoodBound(t *testing.T) {
	slo, step := 2*time.Second, 10*time.Millisecond
	ok := func(stream bool, ttft, e2e time.Duration) mixRecord {
		m := mixRecord{stream: stream}
		m.rec.Status, m.rec.TTFT, m.rec.E2E = 200, ttft, e2e
		m.arr.OutputTokens = 100
		return m
	}
	if !ok(true, slo, 10*time.Second).good(slo, step) || ok(true, slo+1, slo+1).good(slo, step) {
		t.Error("a stream is good by its first token")
	}
	if !ok(false, 3*time.Second, 3*time.Second).good(slo, step) || ok(false, 3*time.Second+1, 3*time.Second+1).good(slo, step) {
		t.Error("a non-streamed answer is good within the SLO plus 100 tokens at 10 ms")
	}
}

// Each refusal with Retry-After is counted by its body's code in its
// tenant's row and its tenant-class cell, and the regime's section shows
// whose requests were refused for which reason; an OK answer and an
// unannounced failure are no refusal.
func TestMixRefusalsByTenant(t *testing.T) {
	rep := &MixReport{Tenants: []MixTenant{{Name: "t1"}, {Name: "t2"}}}
	rec := func(tenant, status int, code, queued string, input int, stream bool) mixRecord {
		m := mixRecord{stream: stream}
		m.rec.Tenant, m.rec.Status, m.rec.Code = tenant, status, code
		m.rec.Headers = []string{"1", "", queued}
		if status == 200 {
			m.rec.Headers[0] = ""
		}
		m.arr.InputTokens, m.arr.OutputTokens = input, 10
		return m
	}
	l := &MixLeg{Load: 2, Regime: regimeShed, Path: pathSluice, records: []mixRecord{
		rec(0, 429, "tenant_over_share", "0", 100, true),
		rec(0, 429, "tenant_over_share", "0", 100, true),
		rec(0, 503, "deadline", "1.5", 2000, false),
		rec(1, 503, "pool_saturated", "0", 2000, true),
		rec(1, 503, "", "0", 100, true),
		rec(1, 200, "", "", 100, true),
		rec(1, 500, "", "", 100, true), // no Retry-After: unannounced
	}}
	l.records[6].rec.Headers[0] = ""
	l.count(rep, time.Hour, time.Millisecond)
	want := []map[string]int{{"tenant_over_share": 2, "deadline": 1}, {"pool_saturated": 1, "no code": 1}}
	for i, w := range want {
		if got := l.Tenants[i].RefusedBy; !maps.Equal(got, w) {
			t.Errorf("%s refused by %v, want %v", l.Tenants[i].Name, got, w)
		}
	}
	n := len(mixClasses)
	if got := l.Cross[0*n+2].RefusedBy; !maps.Equal(got, map[string]int{}) && got != nil {
		t.Errorf("t1 non-stream short refused by %v, want none", got)
	}
	if got := l.Cross[0*n+3].RefusedBy; !maps.Equal(got, map[string]int{"deadline": 1}) {
		t.Errorf("t1 non-stream long refused by %v, want deadline 1", got)
	}
	var md strings.Builder
	ew := &benchkit.ErrWriter{W: &md}
	writeMixRegime(ew, &MixReport{Tenants: rep.Tenants, Legs: []*MixLeg{l}}, regimeShed)
	for _, row := range []string{
		"| 2x | sluice | t1 | all | 3 | 2 | tenant_over_share 2, deadline 1 |",
		"| 2x | sluice | t1 | stream, short | 2 | 2 | tenant_over_share 2 |",
		"| 2x | sluice | t1 | non-stream, long | 1 | 0 | deadline 1 |",
		"| 2x | sluice | t2 | all | 2 | 2 | no code 1, pool_saturated 1 |",
		"| 2x | sluice | t2 | stream, long | 1 | 1 | pool_saturated 1 |",
	} {
		if !strings.Contains(md.String(), row) {
			t.Errorf("report lacks %q:\n%s", row, md.String())
		}
	}
}

// Sluice's pool_saturated has three causes; the report counts each under
// its own key (refusalKey), by the messages Sluice words them with: the
// queue's estimate, a long prompt's prefill, no backend slot at dispatch.
// Before, all three were one "pool_saturated" row.
func TestMixSplitsPoolSaturated(t *testing.T) {
	rep := &MixReport{Tenants: []MixTenant{{Name: "t1"}}}
	rec := func(code, msg string) mixRecord {
		m := mixRecord{stream: true}
		m.rec.Status, m.rec.Code, m.rec.Message = 503, code, msg
		m.rec.Headers = []string{"1", "", "0"}
		m.arr.InputTokens, m.arr.OutputTokens = 100, 10
		return m
	}
	l := &MixLeg{Load: 2, Regime: regimeShed, Path: pathSluice, records: []mixRecord{
		rec("pool_saturated", "all backends for model 'm' are saturated: estimated wait 3s exceeds the 1s left to the request's deadline"),
		rec("pool_saturated", "all backends for model 'm' are saturated: at the queue's 500ms delay target the request's wait still ahead was re-estimated at 2s, more than the 1s left for it to start before its deadline"),
		rec("pool_saturated", "the engines of model 'm' have more prompts queued to prefill than this request's 9000-token prompt leaves time for within its objective: retry after 2s"),
		rec("pool_saturated", "every backend for model 'm' is at its concurrency limit; retry shortly"),
		rec("pool_saturated", ""),
		rec("deadline", "all backends for model 'm' are saturated"),
	}}
	l.count(rep, time.Hour, time.Millisecond)
	want := map[string]int{"pool_saturated/estimate": 2, "pool_saturated/prefill": 1,
		"pool_saturated/no_backend_slot": 1, "pool_saturated": 1, "deadline": 1}
	if got := l.Tenants[0].RefusedBy; !maps.Equal(got, want) {
		t.Errorf("refused by %v, want %v", got, want)
	}
}
