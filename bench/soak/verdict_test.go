package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func samplesOf(name string, ys ...float64) []sample {
	var out []sample
	for i, y := range ys {
		out = append(out, sample{at: time.Duration(i) * 30 * time.Second, values: map[string]float64{name: y}})
	}
	return out
}

func TestSlopeOfALine(t *testing.T) {
	if got := slope([]float64{0, 1, 2, 3}, []float64{5, 7, 9, 11}); math.Abs(got-2) > 1e-9 {
		t.Fatalf("slope = %v, want 2", got)
	}
	if got := slope([]float64{1}, []float64{3}); got != 0 {
		t.Fatalf("slope of one point = %v, want 0", got)
	}
}

// A goroutine per reload (one each 30 s) is the smallest leak the soak
// must catch: 25 over a 25-minute run's second half.
func TestJudgeFailsAGoroutinePerReload(t *testing.T) {
	var ys []float64
	for i := range 50 {
		ys = append(ys, 150+float64(i)+float64(i%3*4)) // +1 per sample, with load noise
	}
	v := judge(samplesOf(sGoroutines, ys...))
	if len(v) != 1 || v[0].pass {
		t.Fatalf("verdict %+v: a goroutine per sample passed", v)
	}
}

// Load noise around a flat level passes, even with a spike at the end.
func TestJudgePassesNoiseAroundAFlatLevel(t *testing.T) {
	var ys []float64
	for i := range 50 {
		ys = append(ys, 170+float64(i%5*8)) // 170..202, no trend
	}
	ys[49] = 228
	v := judge(samplesOf(sGoroutines, ys...))
	if !v[0].pass {
		t.Fatalf("verdict %+v: noise failed", v[0])
	}
	if v[0].first != 170 || v[0].last != 228 || v[0].max != 228 {
		t.Fatalf("first/last/max = %v/%v/%v", v[0].first, v[0].last, v[0].max)
	}
}

func TestGaugesKeepsProcessSeriesAndSluiceGaugesOnly(t *testing.T) {
	text := `# TYPE go_goroutines gauge
go_goroutines 12
# TYPE process_open_fds gauge
process_open_fds 30
# TYPE sluice_queue_waiting gauge
sluice_queue_waiting{model="a"} 2
sluice_queue_waiting{model="b"} 3
# TYPE sluice_requests_total counter
sluice_requests_total{code="200"} 99
`
	got := gauges(text)
	want := map[string]float64{sFDs: 30, "sluice_queue_waiting": 5}
	if len(got) != len(want) {
		t.Fatalf("gauges = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("gauges[%s] = %v, want %v", k, got[k], v)
		}
	}
}

func TestHexAddr(t *testing.T) {
	if got := hexAddr("0100007F:1F90"); got != "127.0.0.1:8080" {
		t.Fatalf("hexAddr = %q", got)
	}
	if got := hexAddr("zz"); got != "" {
		t.Fatalf("hexAddr(bad) = %q", got)
	}
}

// A rate that follows the traffic is printed, not judged; the memo's fill
// is judged against its capacity.
func TestJudgeSignalsAndBounds(t *testing.T) {
	var s []sample
	for i := range 10 {
		s = append(s, sample{at: time.Duration(i) * 30 * time.Second, values: map[string]float64{
			"sluice_model_arrival_requests_per_second": float64(i * 10),
			"sluice_request_memo_bodies":               float64(i * 30),
			"sluice_request_memo_capacity":             1000,
		}})
	}
	for _, v := range judge(s) {
		switch v.name {
		case "sluice_model_arrival_requests_per_second":
			if v.judged != "" || !v.pass {
				t.Errorf("rate judged: %+v", v)
			}
		case "sluice_request_memo_bodies":
			if v.judged != "bound" || !v.pass {
				t.Errorf("memo under its bound: %+v", v)
			}
		}
	}
	for i := range s {
		s[i].values["sluice_request_memo_capacity"] = 300
	}
	for _, v := range judge(s) {
		if v.name == "sluice_request_memo_bodies" && v.pass {
			t.Errorf("memo heading past its bound passed: %+v", v)
		}
	}
}

// The response id map grows all run by design (ids live 24 h): it is judged
// against its fixed 100k bound, not by its slope, and fails heading past it.
func TestJudgeResponseIDsAgainstTheirBound(t *testing.T) {
	grow := func(from, step float64) []seriesVerdict {
		var ys []float64
		for i := range 50 {
			ys = append(ys, from+float64(i)*step)
		}
		return judge(samplesOf("sluice_responses_ids", ys...))
	}
	if v := grow(0, 40); v[0].judged != "bound" || !v[0].pass || v[0].allowed != 100_000 {
		t.Fatalf("2000 ids over a run: %+v", v[0])
	}
	if v := grow(60_000, 800); v[0].pass {
		t.Fatalf("ids heading past 100k passed: %+v", v[0])
	}
}

// The job store fills with a week's job records (the 12-05 soak's 705 jobs:
// 32 KB → 980 KB, +469 KB over the second half, a FAIL on the 256 KiB
// slope floor): judged against queue.max_store_bytes instead.
func TestJudgeJobStoreAgainstItsLimit(t *testing.T) {
	var s []sample
	for i := range 50 {
		s = append(s, sample{at: time.Duration(i) * 30 * time.Second, values: map[string]float64{
			"sluice_jobs_store_bytes":       32_000 + float64(i)*19_000,
			"sluice_jobs_store_limit_bytes": 10 << 30,
		}})
	}
	for _, v := range judge(s) {
		if v.name == "sluice_jobs_store_bytes" && (v.judged != "bound" || !v.pass) {
			t.Fatalf("job store far under its limit: %+v", v)
		}
	}
	for i := range s {
		s[i].values["sluice_jobs_store_limit_bytes"] = 1 << 20
	}
	for _, v := range judge(s) {
		if v.name == "sluice_jobs_store_bytes" && v.pass {
			t.Fatalf("job store heading past its limit passed: %+v", v)
		}
	}
}

// poolRun is an 8-minute run's samples (every 30 s) of the connection
// series: the lean client's idle pool as given, busy connections
// swinging 2..8 with what is in flight, 6 of net/http's (probes,
// scrapes), plus leaked: connections the lean client opened and lost
// (in its open count, never idle) and sockets no counter knows.
func poolRun(idle []float64, leaked, lostSockets func(i int) float64) []sample {
	var out []sample
	for i, id := range idle {
		busy := 2 + float64(i*5%7)
		open := id + busy + leaked(i)
		s := sample{at: time.Duration(i) * 30 * time.Second, values: map[string]float64{
			mIdle:                                    id,
			mOpen:                                    open,
			"sluice_upstream_idle_connections_limit": 4096,
			sBackConns:                               open + 6 + lostSockets(i),
		}}
		withoutIdlePool(s.values)
		out = append(out, s)
	}
	return out
}

// warmPool is the idle pool of the base binary's 8-minute soak of
// 2026-12-06 (backend conns 13 -> 44, upstream_connections_open 7 -> 36):
// the 90 s pool holding each new peak of a random load, higher as the run
// goes on.
var warmPool = []float64{4, 9, 12, 12, 15, 15, 18, 18, 22, 22, 24, 24, 27, 27, 30, 33, 33}

func none(int) float64 { return 0 }

func verdictsByName(vs []seriesVerdict) map[string]seriesVerdict {
	out := map[string]seriesVerdict{}
	for _, v := range vs {
		out[v.name] = v
	}
	return out
}

// A warm pool is not a leak: its raw connection series grow past the 6
// allowed (the soak called that a FAIL before), the same less the idle
// pool pass, and the pool passes against its bound.
func TestJudgeWarmPoolPasses(t *testing.T) {
	vs := verdictsByName(judge(poolRun(warmPool, none, none)))
	for _, n := range []string{sBackConns, mOpen} {
		if v := vs[n]; v.judged != "pool" || !v.pass || v.growth <= 6 {
			t.Errorf("%s: %+v; want growth over 6 (the old FAIL), judged as the pool", n, v)
		}
	}
	for _, n := range []string{sBackLessIdle, sOpenLessIdle} {
		if v := vs[n]; v.judged != "slope" || !v.pass {
			t.Errorf("%s: %+v; want a slope PASS", n, v)
		}
	}
	if v := vs[mIdle]; v.judged != "bound" || !v.pass || v.allowed != 4096 {
		t.Errorf("idle pool: %+v; want a PASS against its 4,096 bound", v)
	}
	var b strings.Builder
	if !printVerdict(&b, judge(poolRun(warmPool, none, none))) {
		t.Errorf("the table FAILs a warm pool:\n%s", b.String())
	}
}

// A connection per sample (one per ~120 requests at 4 req/s) taken and
// never put back nor closed fails both series less the pool; a socket
// per sample that no counter knows fails the /proc one. Each on the same
// warm pool, and on a flat one.
func TestJudgeConnectionLeakFails(t *testing.T) {
	perSample := func(i int) float64 { return float64(i) }
	flat := make([]float64, len(warmPool))
	for i := range flat {
		flat[i] = 12
	}
	for _, idle := range [][]float64{warmPool, flat} {
		vs := verdictsByName(judge(poolRun(idle, perSample, none)))
		for _, n := range []string{sBackLessIdle, sOpenLessIdle} {
			if v := vs[n]; v.pass {
				t.Errorf("leaked connections, %s passed: %+v", n, v)
			}
		}
		var b strings.Builder
		if printVerdict(&b, judge(poolRun(idle, perSample, none))) {
			t.Errorf("the table PASSes a leak:\n%s", b.String())
		}
		vs = verdictsByName(judge(poolRun(idle, none, perSample)))
		if v := vs[sBackLessIdle]; v.pass {
			t.Errorf("lost sockets passed: %+v", v)
		}
		if v := vs[sOpenLessIdle]; !v.pass {
			t.Errorf("the lean client's count failed on sockets it does not hold: %+v", v)
		}
	}
}

// The pool's bound comes from /metrics: a pool heading past it fails.
func TestJudgeIdlePoolAgainstItsBound(t *testing.T) {
	s := poolRun(warmPool, none, none)
	for i := range s {
		s[i].values["sluice_upstream_idle_connections_limit"] = 40
	}
	if v := verdictsByName(judge(s))[mIdle]; v.judged != "bound" || v.pass {
		t.Fatalf("idle pool heading past a bound of 40 passed: %+v", v)
	}
}

// tokenRun is an 8-minute run's samples of the backends' outstanding
// tokens: each request in flight holding 940-1,710 tokens (the soak's
// mix, soakfix), plus leaked: tokens never given back.
func tokenRun(inflight []float64, leaked func(i int) float64) []sample {
	holds := []float64{940, 1710, 1250, 1100, 1580, 1320, 990, 1450}
	var out []sample
	for i, n := range inflight {
		out = append(out, sample{at: time.Duration(i) * 30 * time.Second, values: map[string]float64{
			mInflight: n,
			mTokens:   n*holds[i*3%len(holds)] + leaked(i),
		}})
	}
	return out
}

// More requests in flight at the end of the half (soakfix's FAILs: two
// more at the end): the sum's growth is past the old floor of 1,200, and
// less what the requests in flight hold it passes.
var moreInFlightLate = []float64{3, 4, 2, 3, 4, 3, 2, 4, 3, 0, 3, 3, 4, 3, 4, 3, 5}

func TestJudgeOutstandingTokensFollowInFlight(t *testing.T) {
	s := tokenRun(moreInFlightLate, none)
	half := s[len(s)/2:]
	var xs, ys []float64
	for _, x := range half {
		xs, ys = append(xs, x.at.Minutes()), append(ys, x.values[mTokens])
	}
	if raw := slope(xs, ys) * (half[len(half)-1].at - half[0].at).Minutes(); raw <= 1200 {
		t.Fatalf("raw growth %.0f: the run does not reproduce the old FAIL", raw)
	}
	v := verdictsByName(judge(s))[mTokens]
	if v.judged != "slope" || !v.pass {
		t.Fatalf("no leak, more in flight late: %+v; want a PASS", v)
	}
	var b strings.Builder
	printVerdict(&b, judge(s))
	if !strings.Contains(b.String(), "PASS (apart from those in flight)") {
		t.Errorf("table:\n%s", b.String())
	}
}

// Tokens never given back fail, whatever is in flight: half a request's
// hold per sample (one request in 200 at 4 req/s keeps its hold) on a
// steady and on a late-rising in-flight count, and tokens held at
// samples with none in flight.
func TestJudgeOutstandingTokensLeakFails(t *testing.T) {
	perSample := func(i int) float64 { return 650 * float64(i) }
	flat := []float64{4, 4, 3, 4, 5, 4, 4, 3, 4, 5, 4, 3, 4, 4, 5, 4, 3}
	for name, inflight := range map[string][]float64{"flat": flat, "rising": moreInFlightLate, "none in flight": make([]float64, len(flat))} {
		v := verdictsByName(judge(tokenRun(inflight, perSample)))[mTokens]
		if v.pass {
			t.Errorf("%s: a leak of 650 tokens per sample passed: %+v", name, v)
		}
	}
}
