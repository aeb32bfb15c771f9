package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// sample is one reading of the gateway: named series, each a number.
type sample struct {
	at     time.Duration // since the traffic started
	values map[string]float64
}

// The series every sample has, besides the sluice_* gauges.
const (
	sGoroutines = "goroutines (pprof total)"
	sFDs        = "process_open_fds"
	sBackConns  = "backend conns (established)"
	sRSS        = "process_resident_memory_bytes"
	sHeap       = "go_memstats_heap_inuse_bytes" // read just after a forced GC
	// sBlocks is in the idle samples only: the job store's JetStream
	// message block files open, which nats-server opens when a stream is
	// written or read and closes after minutes idle (one fd each; 7 just
	// after start, 2 after four idle minutes, measured): which of them are
	// open at an idle sample depends on what the last minutes wrote.
	sBlocks = "jetstream block files open"
	// sConsumers is the JetStream consumers on every stream of the
	// embedded server, read through its client port (queue.listen): a
	// listing that leaves its consumer behind grows it.
	sConsumers = "jetstream consumers (all streams)"
	// The jobs bucket's keys (idle samples): job records (j.), batch
	// event records (e.: kept for the retention, as job records are) and
	// pending-webhook index keys (w.: purged once delivered or failed).
	sKeysJob     = "jobs bucket keys j. (job records)"
	sKeysEvent   = "jobs bucket keys e. (batch event records)"
	sKeysPending = "jobs bucket keys w. (pending webhooks)"
	sKeysLine    = "jobs bucket keys b. (batch lines)"
	sKeysActive  = "jobs bucket keys a. (active batches)"
	sKeysOther   = "jobs bucket keys, other"
	// The kernel's TCP sockets and their memory (pages), machine-wide
	// (/proc/net/sockstat: the other helpers' sockets too): printed, not
	// judged (isSignal: "machine_").
	sSockMem   = "machine_tcp_mem_pages (sockstat)"
	sSockInuse = "machine_tcp_inuse (sockstat)"
	// The connections to the backends less the lean client's idle pool
	// (derived in every sample: withoutIdlePool). The pool is a bounded
	// cache that follows the load's peaks (below); what is left is what
	// can leak: connections carrying a request, net/http's (probes,
	// scrapes), and any the gateway opened and lost.
	sBackLessIdle = "backend conns less the lean idle pool"
	sOpenLessIdle = "sluice_upstream_connections_open less idle"
	// process_open_fds holds every pooled connection as well: judged less
	// the idle pool too (the pool's peaks moved it 4.92 against 8 in
	// soakfix's FAILed rerun).
	sFDsLessIdle = "process_open_fds less the lean idle pool"
	mIdle        = "sluice_upstream_idle_connections"
	mOpen        = "sluice_upstream_connections_open"
)

// withoutIdlePool adds the two connection series and the open fds less
// the lean client's idle pool to a sample's values.
//
// Why: the pool is LIFO (h1client takes the most recently used
// connection) and its reaper closes a connection idle 90 s, so at any
// instant it holds about the peak concurrency of the last 90 s or so:
// the bursts', the stalled streams', a restarted simulator's catch-up.
// Every 30 s sample falls within 90 s of some burst, and the peaks of a
// random load reach higher the longer it runs, so a warm pool grows
// through a run and its slope read as a leak (RELIABILITY, "The overload
// guard and a soak for the evening's merges": 10 -> 39, the base binary
// too). A connection that leaks is never idle (taken and neither put
// back nor closed; or a socket no counter knows), so it stays in both
// series here; the pool itself is judged against its bound (bounds).
// Both gauges come from one scrape, the /proc count a moment after it:
// a connection going idle in between moves the first series by one.
func withoutIdlePool(v map[string]float64) {
	idle := v[mIdle]
	if b, ok := v[sBackConns]; ok && b >= 0 {
		v[sBackLessIdle] = b - idle
	}
	if o, ok := v[mOpen]; ok {
		v[sOpenLessIdle] = o - idle
	}
	if f, ok := v[sFDs]; ok {
		v[sFDsLessIdle] = f - idle
	}
}

// sampler reads the admin listener (pprof and /metrics) and the gateway's
// /proc entries, over one keep-alive connection of its own.
type sampler struct {
	admin    string
	pid      int
	simPorts map[string]bool // "HOST:PORT" of every simulator
	client   *http.Client
	nats     string // the embedded server's client address ("": not read)
}

func (s *sampler) take(ctx context.Context, at time.Duration) (sample, error) {
	out := sample{at: at, values: map[string]float64{}}
	g, err := s.goroutines(ctx)
	if err != nil {
		return out, err
	}
	out.values[sGoroutines] = float64(g)
	// A collection first, so the heap series is live data, not where the
	// collector's sawtooth happened to be (one GC each sample: nothing
	// beside the gateway's own, a few per second under this load).
	if _, err := s.get(ctx, "/debug/pprof/heap?gc=1"); err != nil {
		return out, err
	}
	body, err := s.get(ctx, "/metrics")
	if err != nil {
		return out, err
	}
	for name, v := range gauges(body) {
		out.values[name] = v
	}
	out.values[sBackConns] = float64(s.backendConns())
	if s.nats != "" {
		n, err := consumers(ctx, s.nats)
		if err != nil {
			return out, err
		}
		out.values[sConsumers] = float64(n)
	}
	if mem, inuse, err := sockstat("/proc/net/sockstat"); err == nil {
		out.values[sSockMem], out.values[sSockInuse] = float64(mem), float64(inuse)
	}
	withoutIdlePool(out.values)
	return out, nil
}

// consumers counts the consumers of every stream on the NATS server at
// addr, as the streams' info reports them.
func consumers(ctx context.Context, addr string) (int, error) {
	nc, err := nats.Connect("nats://"+addr, nats.Name("soak-sampler"), nats.Timeout(5*time.Second))
	if err != nil {
		return 0, fmt.Errorf("nats %s: %w", addr, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, fmt.Errorf("nats %s: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n := 0
	streams := js.ListStreams(ctx)
	for si := range streams.Info() {
		n += si.State.Consumers
	}
	if err := streams.Err(); err != nil {
		return 0, fmt.Errorf("listing streams: %w", err)
	}
	return n, nil
}

// jobsKeys counts the sluice_jobs bucket's live keys by their prefix.
func jobsKeys(ctx context.Context, addr string) (map[string]int, error) {
	nc, err := nats.Connect("nats://"+addr, nats.Name("soak-sampler"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", addr, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "sluice_jobs")
	if err != nil {
		return nil, fmt.Errorf("jobs bucket: %w", err)
	}
	out := map[string]int{sKeysJob: 0, sKeysEvent: 0, sKeysPending: 0, sKeysLine: 0, sKeysActive: 0, sKeysOther: 0}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return out, nil
		}
		return nil, fmt.Errorf("jobs bucket keys: %w", err)
	}
	defer lister.Stop()
	for k := range lister.Keys() {
		switch {
		case strings.HasPrefix(k, "j."):
			out[sKeysJob]++
		case strings.HasPrefix(k, "e."):
			out[sKeysEvent]++
		case strings.HasPrefix(k, "w."):
			out[sKeysPending]++
		case strings.HasPrefix(k, "b."):
			out[sKeysLine]++
		case strings.HasPrefix(k, "a."):
			out[sKeysActive]++
		default:
			out[sKeysOther]++
		}
	}
	return out, nil
}

// sockstat reads the TCP line of /proc/net/sockstat: its memory in pages
// and the sockets in use.
func sockstat(path string) (mem, inuse int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "TCP:") {
			continue
		}
		f := strings.Fields(line)
		for i := 1; i+1 < len(f); i += 2 {
			v, _ := strconv.Atoi(f[i+1])
			switch f[i] {
			case "mem":
				mem = v
			case "inuse":
				inuse = v
			}
		}
		return mem, inuse, nil
	}
	return 0, 0, fmt.Errorf("%s: no TCP line", path)
}

// blockFiles counts the fds in fdDir (/proc/PID/fd) that are JetStream
// message blocks (*.blk); -1 when it cannot read the directory.
func blockFiles(fdDir string) int {
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil && strings.HasSuffix(l, ".blk") {
			n++
		}
	}
	return n
}

func (s *sampler) get(ctx context.Context, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.admin+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(b), nil
}

// goroutines is the goroutine profile's total: exact, where go_goroutines
// is read at another instant than the rest of the scrape.
func (s *sampler) goroutines(ctx context.Context) (int, error) {
	body, err := s.get(ctx, "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(body, "\n")
	n, err := strconv.Atoi(strings.TrimPrefix(first, "goroutine profile: total "))
	if err != nil {
		return 0, fmt.Errorf("goroutine profile head %q: %w", first, err)
	}
	return n, nil
}

// dump saves the goroutine (debug=1, by stack) and heap profiles under
// dir with the given prefix, for diffs when a series grows.
func (s *sampler) dump(ctx context.Context, dir, prefix string) {
	for name, path := range map[string]string{"goroutine.txt": "/debug/pprof/goroutine?debug=1", "heap.pprof": "/debug/pprof/heap?gc=1"} {
		if b, err := s.get(ctx, path); err == nil {
			os.WriteFile(filepath.Join(dir, prefix+"-"+name), []byte(b), 0o644)
		}
	}
}

// gauges returns the Go runtime and process series the soak follows and
// every sluice_* gauge, each summed over its labels (per-backend series
// come and go with the reloads; their sum is what can leak).
func gauges(text string) map[string]float64 {
	out := map[string]float64{}
	isGauge := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name, typ, ok := strings.Cut(rest, " "); ok && typ == "gauge" {
				isGauge[name] = true
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		name := line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		switch {
		case name == sFDs || name == sRSS || name == sHeap:
		case strings.HasPrefix(name, "sluice_") && isGauge[name]:
		default:
			continue
		}
		if v, err := strconv.ParseFloat(line[sp+1:], 64); err == nil {
			out[name] += v
		}
	}
	return out
}

// backendConns counts the gateway's established TCP connections to a
// simulator port: its upstream pool (requests, probes, scrapes).
func (s *sampler) backendConns() int {
	inodes := map[string]bool{}
	fdDir := fmt.Sprintf("/proc/%d/fd", s.pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return -1
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil {
			if in, ok := strings.CutPrefix(l, "socket:["); ok {
				inodes[strings.TrimSuffix(in, "]")] = true
			}
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", s.pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
		if len(fields) < 10 || fields[3] != "01" || !inodes[fields[9]] {
			continue
		}
		if s.simPorts[hexAddr(fields[2])] {
			n++
		}
	}
	return n
}

// hexAddr turns /proc/net/tcp's "0100007F:1F90" into "127.0.0.1:8080".
func hexAddr(h string) string {
	ip, port, ok := strings.Cut(h, ":")
	if !ok || len(ip) != 8 {
		return ""
	}
	v, err1 := strconv.ParseUint(ip, 16, 32)
	p, err2 := strconv.ParseUint(port, 16, 16)
	if err1 != nil || err2 != nil {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d.%d:%d", v&0xff, v>>8&0xff, v>>16&0xff, v>>24, p)
}

// writeSamples saves every series of every sample as a table, one row a
// sample (at in seconds), one column a series, for a look at what the
// verdict's first/last/max do not show.
func writeSamples(path string, samples []sample) error {
	names := map[string]bool{}
	for _, s := range samples {
		for n := range s.values {
			names[n] = true
		}
	}
	cols := slices.Sorted(maps.Keys(names))
	var b strings.Builder
	b.WriteString("t_s")
	for _, n := range cols {
		b.WriteString("\t" + n)
	}
	b.WriteString("\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "%.0f", s.at.Seconds())
		for _, n := range cols {
			fmt.Fprintf(&b, "\t%g", s.values[n])
		}
		b.WriteString("\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
