// Command streamclient is bench/stream-overhead.sh's load generator: M
// concurrent SSE streams against one target, each event's arrival seen as
// the client reads its line (not when the stream ends, as wrk would).
//
//	--mode load: closed loop for --dur; prints "streams events errors secs".
//	--mode gaps: closed loop for --dur; prints the p50/p90/p99/p99.9 of the
//	  gap between consecutive data events of a stream and of the time to
//	  the first event (ms): "gap_p50 gap_p90 gap_p99 gap_p999 ttfe_p50 ttfe_p99 n_gaps errors".
//	--mode hold: opens --conns streams, prints "open" once every one has
//	  had its first event or failed ("open N": N had an event), keeps them open for --hold, then cancels them.
//
// An error is a non-200 answer, a failed read or a stream ending without
// data: [DONE]; its events still count in --mode load. After an error
// that worker waits 100 ms before its next request.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	streams, events, errors int
	gaps, ttfe              []time.Duration
}

func main() {
	url := flag.String("url", "", "target URL (POST)")
	body := flag.String("body", "", "request body (a streaming chat request)")
	conns := flag.Int("conns", 64, "concurrent streams")
	dur := flag.Duration("dur", 10*time.Second, "how long to run (load, gaps)")
	mode := flag.String("mode", "load", "load, gaps or hold")
	hold := flag.Duration("hold", 10*time.Second, "how long to keep the streams open (hold)")
	ramp := flag.Duration("ramp", 0, "spread the openings over this long (hold)")
	wait := flag.Duration("wait", time.Minute, "give up opening after this long (hold)")
	flag.Parse()
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: *conns, MaxConnsPerHost: 0, DisableCompression: true,
	}}
	switch *mode {
	case "load", "gaps":
		res := run(client, *url, []byte(*body), *conns, *dur, *mode == "gaps")
		if *mode == "load" {
			fmt.Printf("%d %d %d %.3f\n", res.streams, res.events, res.errors, dur.Seconds())
			return
		}
		ms := func(d []time.Duration, q float64) float64 {
			if len(d) == 0 {
				return -1
			}
			return float64(d[int(q*float64(len(d)-1))]) / 1e6
		}
		slices.Sort(res.gaps)
		slices.Sort(res.ttfe)
		fmt.Printf("%.3f %.3f %.3f %.3f %.3f %.3f %d %d\n", ms(res.gaps, .5), ms(res.gaps, .9), ms(res.gaps, .99), ms(res.gaps, .999),
			ms(res.ttfe, .5), ms(res.ttfe, .99), len(res.gaps), res.errors)
	case "hold":
		holdOpen(client, *url, []byte(*body), *conns, *ramp, *wait, *hold)
	default:
		log.Fatalf("--mode: %q is not load, gaps or hold", *mode)
	}
}

// run keeps conns streams going until dur has passed; a stream started
// before the end is read to its end.
func run(client *http.Client, url string, body []byte, conns int, dur time.Duration, timing bool) result {
	end := time.Now().Add(dur)
	var mu sync.Mutex
	var total result
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r result
			for time.Now().Before(end) {
				errs := r.errors
				stream(context.Background(), client, url, body, &r, timing, nil)
				if r.errors > errs {
					time.Sleep(100 * time.Millisecond) // a refused client backs off, not a tight loop
				}
			}
			mu.Lock()
			total.streams += r.streams
			total.events += r.events
			total.errors += r.errors
			total.gaps = append(total.gaps, r.gaps...)
			total.ttfe = append(total.ttfe, r.ttfe...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return total
}

// stream sends one request and reads its events line by line; first, if
// not nil, is called at the first data event.
func stream(ctx context.Context, client *http.Client, url string, body []byte, r *result, timing bool, first func()) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		if r.errors == 0 {
			log.Print(err)
		}
		r.errors++
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		if r.errors == 0 {
			log.Printf("status %d: %.200s", resp.StatusCode, b)
		}
		r.errors++
		return
	}
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	var last time.Time
	done := false
	for {
		line, err := br.ReadSlice('\n')
		if bytes.HasPrefix(line, []byte("data:")) {
			r.events++
			if bytes.HasPrefix(line, []byte("data: [DONE]")) {
				done = true
			}
			if timing || (first != nil && last.IsZero()) {
				now := time.Now()
				if last.IsZero() {
					r.ttfe = append(r.ttfe, now.Sub(start))
					if first != nil {
						first()
					}
				} else if timing && bytes.Contains(line, []byte(`"finish_reason":null`)) {
					r.gaps = append(r.gaps, now.Sub(last))
				}
				last = now
			}
		}
		if err != nil {
			break
		}
	}
	r.streams++
	if !done {
		r.errors++
	}
}

// holdOpen opens conns streams, the i-th at i*ramp/conns; a stream refused
// or failed before its first event is tried again 100 ms later (a gateway
// that learns its limits sheds a cold burst). It prints "open N" when all
// conns have had a first event or after wait, holds them for hold, then
// cancels them.
func holdOpen(client *http.Client, url string, body []byte, conns int, ramp, wait, hold time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var began, retries atomic.Int64
	start := time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * ramp / time.Duration(conns))
			for ctx.Err() == nil {
				got := false
				var r result
				stream(ctx, client, url, body, &r, false, func() { got = true; began.Add(1) })
				if got || time.Since(start) > wait {
					return
				}
				retries.Add(1)
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	for began.Load() < int64(conns) && time.Since(start) < wait {
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Println("open", began.Load(), "retries", retries.Load(), "after", time.Since(start).Round(time.Millisecond))
	os.Stdout.Sync()
	time.Sleep(hold)
	cancel()
	wg.Wait()
}
