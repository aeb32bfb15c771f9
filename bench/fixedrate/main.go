// Command fixedrate sends one POST at a fixed rate (open loop) and reports
// latency percentiles and non-2xx answers: what wrk cannot do (wrk is
// closed-loop, its latency rises with its own concurrency). Latency is
// measured from each request's scheduled send time, so a stalled server
// is charged for the requests that queued behind it (no coordinated
// omission). bench/proxy-overhead.sh runs it against the backend directly,
// nginx and Sluice to get the latency each adds at 1,000 req/s.
//
//	go run ./bench/fixedrate --url http://127.0.0.1:8080/v1/chat/completions --rate 1000 --duration 10s
//
// With --targets name=url,... it measures several servers instead, in
// alternating slices (--slice, --repeats; see runSlices) and prints one
// row per target: medians of the per-slice p50 and p99, and the median
// (with quartiles) of each slice's p99 minus the first target's p99 in the
// same repeat.
//
// Output, one line: "sent ok non2xx errors late p50_ms p90_ms p99_ms p999_ms max_ms",
// late = requests that started more than 1 ms after their scheduled time
// because every connection was busy (the generator, not the server, is
// then the limit if it is large).
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
)

const defaultBody = `{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":4}`

func main() {
	url := flag.String("url", "", "target URL (POST)")
	rate := flag.Float64("rate", 1000, "requests per second")
	dur := flag.Duration("duration", 10*time.Second, "how long to send")
	warm := flag.Duration("warmup", time.Second, "sent at the same rate first, not counted")
	conns := flag.Int("conns", 64, "connections (and sending goroutines)")
	body := flag.String("body", defaultBody, "request body (JSON)")
	targets := flag.String("targets", "", "name=url,name=url,...: alternate between these (the first is the reference)")
	slice := flag.Duration("slice", time.Second, "with --targets: length of one slice")
	repeats := flag.Int("repeats", 20, "with --targets: how many times every target gets a slice")
	raw := flag.String("raw", "", "with --targets: also write every request to this `FILE`, one line each: target repeat scheduled_unix_ns latency_ns status (status 0: transport error)")
	flag.Parse()
	if *targets != "" {
		ts, err := parseTargets(*targets, *conns, []byte(*body))
		if err != nil || *rate <= 0 || *conns <= 0 || *repeats <= 0 {
			fmt.Fprintln(os.Stderr, err)
			flag.Usage()
			os.Exit(2)
		}
		var rw io.Writer
		if *raw != "" {
			f, err := os.Create(*raw)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			defer f.Close()
			bw := bufio.NewWriter(f)
			defer bw.Flush()
			rw = bw
		}
		runSlices(context.Background(), os.Stdout, rw, ts, *rate, *warm, *slice, *repeats)
		return
	}
	if *url == "" || *rate <= 0 || *conns <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, DisableCompression: true}}
	g := generator{client: client, url: *url, body: []byte(*body), conns: *conns}
	g.run(context.Background(), *rate, *warm) // warm the connections
	r := g.run(context.Background(), *rate, *dur)
	fmt.Printf("%d %d %d %d %d %.3f %.3f %.3f %.3f %.3f\n", r.sent, r.ok, r.non2xx, r.errors, r.late,
		benchkit.PercentileMs(r.lat, 50), benchkit.PercentileMs(r.lat, 90),
		benchkit.PercentileMs(r.lat, 99), benchkit.PercentileMs(r.lat, 99.9), benchkit.PercentileMs(r.lat, 100))
}

type generator struct {
	client *http.Client
	url    string
	body   []byte
	conns  int
	// each: keep every request's scheduled time and status too (--raw).
	each bool
}

type result struct {
	sent, ok, non2xx, errors, late int
	lat                            []time.Duration
	reqs                           []sample // with generator.each: every request, errors included
}

// sample is one request for --raw: its scheduled send time, latency and
// status (0: a transport error).
type sample struct {
	at     time.Time
	lat    time.Duration
	status int
}

// run schedules rate*dur requests at exact intervals; conns goroutines take
// them in order. Each goroutine keeps its own latencies, merged at the end.
func (g generator) run(ctx context.Context, rate float64, dur time.Duration) result {
	n := int(rate * dur.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	slots := make(chan time.Time, n)
	start := time.Now().Add(10 * time.Millisecond)
	for i := 0; i < n; i++ {
		slots <- start.Add(time.Duration(i) * interval)
	}
	close(slots)
	parts := make([]result, g.conns)
	var wg sync.WaitGroup
	for c := range parts {
		wg.Add(1)
		go func(part *result) {
			defer wg.Done()
			for at := range slots {
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				} else if d < -time.Millisecond {
					part.late++
				}
				g.one(ctx, at, part)
			}
		}(&parts[c])
	}
	wg.Wait()
	var r result
	for _, p := range parts {
		r.sent += p.sent
		r.ok += p.ok
		r.non2xx += p.non2xx
		r.errors += p.errors
		r.late += p.late
		r.lat = append(r.lat, p.lat...)
		r.reqs = append(r.reqs, p.reqs...)
	}
	return r
}

func (g generator) one(ctx context.Context, scheduled time.Time, r *result) {
	r.sent++
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url, bytes.NewReader(g.body))
	if err != nil {
		r.errors++
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		r.errors++
		if g.each {
			r.reqs = append(r.reqs, sample{at: scheduled, lat: time.Since(scheduled)})
		}
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	lat := time.Since(scheduled)
	r.lat = append(r.lat, lat)
	if g.each {
		r.reqs = append(r.reqs, sample{at: scheduled, lat: lat, status: resp.StatusCode})
	}
	switch {
	case err != nil:
		r.errors++
	case resp.StatusCode/100 != 2:
		r.non2xx++
	default:
		r.ok++
	}
}
