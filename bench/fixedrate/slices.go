package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
)

// target is one server measured in alternating slices.
type target struct {
	name                           string
	gen                            generator
	p50                            []float64 // per slice, ms
	p99                            []float64
	sent, ok, non2xx, errors, late int
}

// parseTargets reads "name=url,name=url"; the first is the reference
// (the backend directly) that the others' added latency is taken against.
func parseTargets(spec string, conns int, body []byte) ([]*target, error) {
	var ts []*target
	for _, part := range strings.Split(spec, ",") {
		name, url, ok := strings.Cut(part, "=")
		if !ok || name == "" || url == "" {
			return nil, fmt.Errorf("--targets: %q is not name=url", part)
		}
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}}
		ts = append(ts, &target{name: name, gen: generator{client: client, url: url, body: body, conns: conns}})
	}
	if len(ts) < 2 {
		return nil, fmt.Errorf("--targets: need the reference and at least one more")
	}
	return ts, nil
}

// runSlices measures every target in short slices at the same rate,
// alternating, repeats times; each repeat rotates the order so no target
// always follows the same one. Slow drift of a shared machine (other jobs
// starting and stopping) then falls on every target alike, and the
// per-repeat difference to the reference cancels most of it.
// raw, when not nil, gets every measured request (see --raw).
func runSlices(ctx context.Context, w, raw io.Writer, ts []*target, rate float64, warm, slice time.Duration, repeats int) {
	for _, t := range ts {
		t.gen.run(ctx, rate, warm)
		t.gen.each = raw != nil
	}
	for rep := 0; rep < repeats; rep++ {
		for i := range ts {
			t := ts[(rep+i)%len(ts)]
			r := t.gen.run(ctx, rate, slice)
			t.sent += r.sent
			t.ok += r.ok
			t.non2xx += r.non2xx
			t.errors += r.errors
			t.late += r.late
			t.p50 = append(t.p50, benchkit.PercentileMs(r.lat, 50))
			t.p99 = append(t.p99, benchkit.PercentileMs(r.lat, 99))
			for _, q := range r.reqs {
				fmt.Fprintf(raw, "%s %d %d %d %d\n", t.name, rep, q.at.UnixNano(), q.lat.Nanoseconds(), q.status)
			}
		}
	}
	ref := ts[0]
	fmt.Fprintf(w, "%-10s %7s %7s %7s %7s %6s %9s %9s %12s %12s %12s\n", "target", "sent", "ok", "non-2xx",
		"errors", "late", "p50 ms", "p99 ms", "p99 added", "added q25", "added q75")
	for _, t := range ts {
		added := make([]float64, len(t.p99))
		for i := range added {
			added[i] = t.p99[i] - ref.p99[i]
		}
		fmt.Fprintf(w, "%-10s %7d %7d %7d %7d %6d %9.3f %9.3f %9.3f ms %9.3f ms %9.3f ms\n", t.name, t.sent, t.ok,
			t.non2xx, t.errors, t.late, benchkit.Median(t.p50), benchkit.Median(t.p99),
			benchkit.Median(added), quantile(added, 0.25), quantile(added, 0.75))
	}
	writePairs(w, ts, rand.New(rand.NewPCG(1, 2)))
}

// bootstraps is how many resamples bound the median's confidence interval.
const bootstraps = 2000

// writePairs prints, for every pair of targets, the median over repeats
// of the per-repeat p99 difference with a 95% bootstrap confidence
// interval of that median: when it spans 0, the run does not tell the two
// apart at p99 (a slice's p99 is its 10th-worst request at 1,000 req/s,
// so it swings with whatever else the machine ran in that second).
func writePairs(w io.Writer, ts []*target, rng *rand.Rand) {
	fmt.Fprintf(w, "p99 of a minus p99 of b in the same repeat: median, 95%% bootstrap CI of the median, repeats where a was slower\n")
	for i := 1; i < len(ts); i++ {
		for j := 0; j < i; j++ {
			a, b := ts[i], ts[j]
			d := make([]float64, len(a.p99))
			slower := 0
			for k := range d {
				d[k] = a.p99[k] - b.p99[k]
				if d[k] > 0 {
					slower++
				}
			}
			lo, hi := medianCI(d, rng)
			fmt.Fprintf(w, "  %-10s - %-10s %+8.3f ms  CI [%+.3f, %+.3f] ms  %d/%d\n", a.name, b.name,
				benchkit.Median(d), lo, hi, slower, len(d))
		}
	}
}

// medianCI is the percentile bootstrap 95% interval of xs's median.
func medianCI(xs []float64, rng *rand.Rand) (lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	meds := make([]float64, bootstraps)
	s := make([]float64, len(xs))
	for b := range meds {
		for k := range s {
			s[k] = xs[rng.IntN(len(xs))]
		}
		meds[b] = benchkit.Median(s)
	}
	slices.Sort(meds)
	return meds[bootstraps*25/1000], meds[bootstraps*975/1000-1]
}

// quantile is the nearest-rank q-quantile (0 < q <= 1) of xs, 0 when empty.
func quantile(xs []float64, q float64) float64 {
	ds := make([]time.Duration, len(xs))
	for i, x := range xs {
		ds[i] = time.Duration(x * float64(time.Millisecond))
	}
	return benchkit.PercentileMs(ds, q*100)
}
