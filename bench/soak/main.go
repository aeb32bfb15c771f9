// Command soak runs Sluice on its defaults in front of `sluice sim`
// backends for a long while under a modest mixed load and looks for slow
// leaks the quick chaos run (seconds per scenario) cannot see: goroutines,
// open fds, connections to the backends, heap and RSS, and every sluice_*
// gauge on /metrics.
//
//	nice -n 19 go build -o /tmp/soak-sluice ./cmd/sluice
//	nice -n 19 go run ./bench/soak --exe /tmp/soak-sluice --duration 25m --rate 4
//
// Everything is a child process on free loopback ports: four simulators
// (the fourth joins and leaves the pool on alternate reloads) and the
// gateway (`sluice serve --config FILE`: defaults, plus pprof on the admin
// listener and a per-address rate limit so that bursts get 429s). The
// traffic: 8% to the model-addressed endpoints (rerank, score, tokenize
// then detokenize, moderations, a generated WAV transcribed or
// translated; each answer's shape checked), the rest chat completions
// plain and streamed, completions, embeddings, identical deterministic
// prompts (cache hits, coalescing), clients that go away mid-stream, slow
// readers, async jobs polled to their end, the Responses API (12% of the
// rest: plain and streamed, a third continuing a recent response, half
// read back with GET and input_items, some deleted); every second tick a
// 40-request burst from one address (429s), every fourth a 120-stream
// burst (queue refusals), both on connections not kept alive;
// a Batch API batch at 25% and 60%; the config file rewritten every
// --reload (the gateway's file watch reloads it); one simulator SIGKILLed
// and restarted 20 s later --kills times. With --batch-every, a batch of
// --batch-lines requests every that long instead of the two (each: the
// input uploaded, the batch polled to its end, its output downloaded,
// the files listed, the input read back and deleted); with --webhooks,
// half the async jobs name a receiver in the driver as their webhook,
// and one never delivered fails the run; with --stall, half the slow
// readers stop reading their stream for that long after 4 KiB, then read
// the rest; with --batch-webhooks, queue.batch_webhooks names two
// endpoints in the driver (every tenant's, and only the tenant of half
// the batches'): an event lost, or sent to the wrong tenant's, fails
// the run. Each sample also counts the embedded NATS server's consumers
// (through queue.listen: a listing that leaves one behind grows it) and
// reads the machine's TCP socket memory (/proc/net/sockstat, printed).
//
// A sample every --interval tick (30 s: the bursts' schedule assumes it),
// taken before the tick's events, with the heap read just after a forced
// collection; a warm-up before the first. Before the run and after it
// (the config back to the first one), with no traffic and the driver's
// connections closed, an idle sample (with the jobs bucket's keys counted
// by kind) and the goroutine and heap profiles
// are saved in --dir (for diffs), and every sample's series in
// --dir/samples.tsv. The verdict: each resource series'
// least-squares slope over the second half, times the half's length,
// against thresholdFor's allowance (rates, estimates and limits are
// printed, not judged; the connections to the backends and the open fds
// less the lean client's idle pool, which is judged against its bound:
// withoutIdlePool; the backends' outstanding tokens per request in flight
// on them, over the whole run: tokensPerBackendRequest); and at idle
// (judgeIdle) the goroutines and fds (less the pool of connections to
// the backends and the job store's open JetStream block files) back
// within 5%, the chaos suite's leak target, and the outstanding tokens
// back to before the run. Exit 1 when one fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	exe := flag.String("exe", "/tmp/soak-sluice", "sluice binary (go build -o /tmp/soak-sluice ./cmd/sluice)")
	dir := flag.String("dir", "", "working directory for the config, data, logs and profiles (default: a new temp dir)")
	duration := flag.Duration("duration", 25*time.Minute, "length of the sampled run (bounded to 2h)")
	warmup := flag.Duration("warmup", time.Minute, "traffic before the first sample")
	rate := flag.Float64("rate", 4, "requests/s of the steady mix (bounded to 50)")
	interval := flag.Duration("interval", 30*time.Second, "sampling interval")
	reload := flag.Duration("reload", 30*time.Second, "config rewrite interval, a multiple of --interval (0: none)")
	kills := flag.Int("kills", 2, "simulator SIGKILL+restart cycles during the run")
	seed := flag.Uint64("seed", 1, "random seed of the traffic")
	flag.DurationVar(&batchEvery, "batch-every", 0, "a Batch API batch (and its Files calls) every this long, one at a time (0: two, at 25% and 60% of the run)")
	flag.IntVar(&batchLines, "batch-lines", 20, "requests in each batch")
	flag.BoolVar(&webhooks, "webhooks", false, "half the async jobs with a webhook to a receiver in the driver; lost ones fail the run")
	flag.BoolVar(&batchWebhooks, "batch-webhooks", false, "queue.batch_webhooks: two endpoints in the driver, one for every tenant, one for the tenant of half the batches; an event lost or sent to the wrong tenant's endpoint fails the run")
	flag.DurationVar(&stallFor, "stall", 0, "half the slow readers stop reading their stream for this long after 4 KiB, then read the rest (0: none)")
	flag.BoolVar(&revoke, "revoke", false, "auth.keys lists one API key, its tenant's only one, removed by every fourth reload and put back by the next; 20 async jobs queued under it just before each removal must end succeeded or failed api_key_revoked")
	flag.Parse()
	*duration = min(*duration, 2*time.Hour)
	*rate = math.Min(*rate, 50)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *exe, *dir, *duration, *warmup, *rate, *interval, *reload, *kills, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// The Batch API and webhook knobs (flags).
var (
	batchEvery    time.Duration
	batchLines    int
	webhooks      bool
	batchWebhooks bool
	stallFor      time.Duration
	revoke        bool
)

func run(ctx context.Context, exe, dir string, duration, warmup time.Duration, rate float64, interval, reloadEvery time.Duration, kills int, seed uint64) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "sluice-soak-")
		if err != nil {
			return err
		}
		dir = d
	}
	began := time.Now()
	var bhooks *batchHookSink
	hooksYAML := ""
	if batchWebhooks {
		h, err := newBatchHookSink(mixTenant(0))
		if err != nil {
			return err
		}
		defer h.close()
		bhooks, hooksYAML = h, h.yaml()
	}
	r, err := newRig(ctx, exe, dir, 4, hooksYAML, revoke)
	if err != nil {
		return err
	}
	defer r.close()
	s := &soakRun{r: r, smp: newSampler(r), dir: dir, began: began, notes: map[int]string{}}
	s.d = newDriver("http://"+r.listen, seed, 48)
	s.d.bhooks = bhooks
	if revoke {
		s.rtally = newRevokeTally()
	}
	if webhooks {
		h, err := newHookSink()
		if err != nil {
			return err
		}
		defer h.close()
		s.d.hooks = h
	}
	fmt.Printf("soak: gateway pid %d on %s (admin %s), sims %v, dir %s\n", r.gw.pid(), r.listen, r.admin, r.simAddrs, dir)

	// Warm-up, then the idle baseline.
	wctx, wcancel := context.WithTimeout(ctx, warmup)
	s.d.run(wctx, rate)
	wcancel()
	idleBefore, err := idle(ctx, s.d, s.smp, dir, "before")
	if err != nil {
		return err
	}
	s.loaded(ctx, duration, rate, interval, reloadEvery, kills)
	idleAfter, err := s.backToIdle(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("\nsamples (every %s, %s after a %s warm-up; rate %.1f req/s; %d reloads)\n", interval, duration, warmup, rate, r.reloads)
	if !s.report(idleBefore, idleAfter) {
		// Returned, not os.Exit: the deferred close stops the children.
		return errors.New("FAIL")
	}
	fmt.Println("\nsoak: PASS")
	return nil
}

// newSampler samples the rig's gateway, counting its connections to the
// simulators.
func newSampler(r *rig) *sampler {
	ports := map[string]bool{}
	for _, a := range r.simAddrs {
		ports[a] = true
	}
	return &sampler{admin: r.admin, pid: r.gw.pid(), simPorts: ports, client: &http.Client{Timeout: 30 * time.Second}, nats: r.nats}
}

// soakRun is one soak's children, its traffic and what its sampled run
// saw.
type soakRun struct {
	r      *rig
	smp    *sampler
	d      *driver
	rtally *revokeTally // with --revoke
	dir    string
	began  time.Time // the soak's, warm-up included
	start  time.Time // the sampled run's
	bg     sync.WaitGroup
	nmu    sync.Mutex
	events []string // what happened since the last sample
	// samples are the sampled run's; notes[i] the events before the i-th.
	samples []sample
	notes   map[int]string
}

// event notes what happened, for the next sample's line.
func (s *soakRun) event(format string, args ...any) {
	s.nmu.Lock()
	s.events = append(s.events, fmt.Sprintf(format, args...))
	s.nmu.Unlock()
}

// loaded is the sampled run: the steady mix, the batches and the
// simulator kills in the background, and on one clock a sample every
// interval, the reloads and the bursts. It returns once the traffic and
// the webhooks have settled.
func (s *soakRun) loaded(ctx context.Context, duration time.Duration, rate float64, interval, reloadEvery time.Duration, kills int) {
	s.start = time.Now()
	runCtx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	s.bg.Go(func() { s.d.run(runCtx, rate) })
	s.startBatches(runCtx, duration)
	s.bg.Go(func() { s.killSims(runCtx, duration, kills) })

	// One clock for the samples and the periodic events: each tick first
	// samples (a whole interval after the last tick's events), then
	// reloads and starts the tick's burst, so every sample sees the same
	// phase of the cycle and the bursts' transients (their connections,
	// their streams) are not what the slope measures.
	s.takeOne(runCtx)
	reloadTicks := max(int(reloadEvery/interval), 1)
	tick := 0
	every(runCtx, interval, func() {
		tick++
		s.takeOne(runCtx)
		if reloadEvery > 0 && tick%reloadTicks == 0 {
			s.reload(ctx, runCtx)
		}
		// The bursts run to their end after the run's: their answers are counted.
		switch {
		case tick%4 == 2: // every 2 minutes at 30 s ticks
			s.bg.Go(func() { s.d.queueBurst(context.WithoutCancel(runCtx), 15) })
		case tick%2 == 1: // every minute
			s.bg.Go(func() { s.d.rateBurst(context.WithoutCancel(runCtx), 40) })
		}
	})
	s.bg.Wait()
	s.d.wg.Wait()
	if s.d.hooks != nil {
		s.d.hooks.settle(ctx)
	}
	if s.d.bhooks != nil {
		s.d.bhooks.settle(ctx)
	}
}

// startBatches starts the Batch API's traffic: a batch every
// --batch-every, else two, at 25% and 60% of the run.
func (s *soakRun) startBatches(runCtx context.Context, duration time.Duration) {
	if batchEvery > 0 {
		s.bg.Go(func() { s.d.batchLoop(runCtx, batchEvery, batchLines, s.event) })
		return
	}
	for _, at := range []float64{0.25, 0.6} {
		s.bg.Go(func() {
			if sleep(runCtx, time.Duration(at*float64(duration))) {
				if err := s.d.batch(runCtx, 20); err != nil {
					s.event("batch: %v", err)
				} else {
					s.event("batch done")
				}
			}
		})
	}
}

// killSims SIGKILLs simulator 1 kills times, evenly over the run, and
// restarts it 20 s after each.
func (s *soakRun) killSims(runCtx context.Context, duration time.Duration, kills int) {
	for k := 1; k <= kills; k++ {
		if !sleep(runCtx, time.Until(s.start.Add(time.Duration(float64(k)/float64(kills+1)*float64(duration))))) {
			return
		}
		s.d.resp.disturb() // before: a follow-up answered while the kill lands is about a gone backend
		s.r.killSim(1)
		s.d.resp.disturb()
		s.event("sim1 killed")
		if !sleep(runCtx, 20*time.Second) {
			return
		}
		err := s.r.startSim(context.WithoutCancel(runCtx), 1)
		s.d.resp.disturb() // a restarted simulator holds no response
		if err != nil {
			s.event("sim1 restart: %v", err)
		} else {
			s.event("sim1 restarted")
		}
	}
}

// takeOne takes a sample, with the events noted since the last.
func (s *soakRun) takeOne(runCtx context.Context) {
	smp, err := s.smp.take(runCtx, time.Since(s.start))
	if err != nil {
		fmt.Fprintln(os.Stderr, "sample:", err)
		return
	}
	s.nmu.Lock()
	s.notes[len(s.samples)] = strings.Join(s.events, "; ")
	s.events = nil
	s.nmu.Unlock()
	s.samples = append(s.samples, smp)
	fmt.Printf("%s goroutines %.0f fds %.0f bconns %.0f rss %.1f MiB heap %.1f MiB\n", smp.at.Round(time.Second),
		smp.values[sGoroutines], smp.values[sFDs], smp.values[sBackConns], smp.values[sRSS]/(1<<20), smp.values[sHeap]/(1<<20))
}

// reload rewrites the config (the gateway's watch reloads it): the extra
// simulator joins or leaves the pool, and with --revoke the revoked key
// goes or comes back.
func (s *soakRun) reload(ctx, runCtx context.Context) {
	// The ids the extra simulator holds leave the pool with it. The
	// gateway applies the file when it sees it change, which may be
	// before reload returns: an answer given then must already count
	// as after a disturbance (one GET's 404 was taken for a wrong
	// answer so), and one about an id made in between, too.
	leaving := s.r.extraBackendOn
	if leaving {
		s.d.resp.disturb()
	}
	if s.rtally != nil && revokeKeyOn(s.r.reloads) && !revokeKeyOn(s.r.reloads+1) {
		// Queued just before the reload that removes their key.
		s.d.revokeBurst(ctx, s.rtally, 20)
	}
	if err := s.r.reload(); err != nil {
		s.event("reload: %v", err)
	}
	if leaving {
		s.d.resp.disturb()
		// And once it has surely applied it: the gateway waits out
		// its watch's debounce (reloadDebounce, 250 ms) first, so a
		// response made on the leaving simulator in between, counted
		// after the disturbances above, lost its backend after them
		// (two continuations' 400s were judged failures so).
		s.d.resp.disturbLater(runCtx, 2*time.Second, &s.bg)
	}
}

// backToIdle takes the idle sample after the run, with the starting
// config back (pool and limits): both idle samples see the same backends,
// each pooled backend has its own probe and scrape connections.
func (s *soakRun) backToIdle(ctx context.Context) (sample, error) {
	if ctx.Err() != nil {
		return sample{}, ctx.Err()
	}
	if s.r.reloads%2 == 1 {
		if err := s.r.reload(); err != nil {
			return sample{}, err
		}
	}
	if s.rtally != nil {
		s.rtally.wg.Wait() // the key is back (reloads even): the pollers see their jobs' ends
	}
	return idle(ctx, s.d, s.smp, s.dir, "after")
}

// report prints the samples, the outcomes and every verdict, and reports
// whether all passed.
func (s *soakRun) report(idleBefore, idleAfter sample) (ok bool) {
	d := s.d
	printSamples(os.Stdout, s.samples, s.notes)
	if err := writeSamples(filepath.Join(s.dir, "samples.tsv"), s.samples); err != nil {
		fmt.Fprintln(os.Stderr, "samples.tsv:", err)
	}
	fmt.Printf("\noutcomes:\n%s\n", d.summary())
	fmt.Println("verdict: growth over the second half (slope x its length) against max(floor, 10% of its median)")
	ok = printVerdict(os.Stdout, judge(s.samples))
	ok = d.respSummary(os.Stdout) && ok
	if d.hooks != nil {
		ok = d.hooks.report(os.Stdout) && ok
	}
	if d.bhooks != nil {
		ok = d.bhooks.report(os.Stdout) && ok
	}
	if s.rtally != nil {
		ok = s.rtally.report(os.Stdout) && ok
	}
	ok = d.ep.report(os.Stdout, "endpoints", "not a 2xx of the simulator's shape, not an overload's 429/503 with Retry-After, not a cut or 502/503/504 during a disturbance") && ok
	fmt.Printf("\nidle, no traffic, driver's connections closed (profiles in %s/{before,after}-*):\n", s.dir)
	rows, idleOK := judgeIdle(idleBefore, idleAfter)
	printIdle(os.Stdout, rows)
	ok = idleOK && ok
	fmt.Printf("\nCPU seconds over the whole soak (%s): %s\n", time.Since(s.began).Round(time.Second), s.r.cpu())
	return ok
}

// idle lets the gateway settle with no traffic, saves its profiles and
// takes a sample: the baseline and the end compared without load noise.
func idle(ctx context.Context, d *driver, smp *sampler, dir, prefix string) (sample, error) {
	d.wg.Wait()
	d.closeIdle()
	if !sleep(ctx, 30*time.Second) {
		return sample{}, ctx.Err()
	}
	smp.dump(ctx, dir, prefix) // heap?gc=1 collects first, so the sample's heap is live data
	s, err := smp.take(ctx, 0)
	if err != nil {
		return s, fmt.Errorf("idle sample %s: %w", prefix, err)
	}
	s.values[sBlocks] = float64(blockFiles(fmt.Sprintf("/proc/%d/fd", smp.pid)))
	// The jobs bucket's keys by kind, idle samples only: listing them
	// makes a consumer, which the run's consumer series must not see.
	if smp.nats != "" {
		keys, err := jobsKeys(ctx, smp.nats)
		if err != nil {
			return s, fmt.Errorf("idle sample %s: %w", prefix, err)
		}
		for k, v := range keys {
			s.values[k] = float64(v)
		}
		fmt.Printf("idle %s: jobs bucket keys: j. %d, b. %d, a. %d, e. %d, w. %d, other %d\n", prefix,
			keys[sKeysJob], keys[sKeysLine], keys[sKeysActive], keys[sKeysEvent], keys[sKeysPending], keys[sKeysOther])
	}
	fmt.Printf("idle %s: goroutines %.0f fds %.0f bconns %.0f blocks %.0f rss %.1f MiB heap %.1f MiB\n", prefix,
		s.values[sGoroutines], s.values[sFDs], s.values[sBackConns], s.values[sBlocks], s.values[sRSS]/(1<<20), s.values[sHeap]/(1<<20))
	return s, nil
}

// every calls f each period until ctx ends (f runs in the caller's
// goroutine: a slow f delays the next call, never overlaps it).
func every(ctx context.Context, period time.Duration, f func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ctx.Err() == nil {
				f()
			}
		}
	}
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
