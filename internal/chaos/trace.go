package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// A trace (Options.Trace, `sluice chaos --trace FILE`) lists every request
// of the well-behaved client: when it was sent in its phase, its time to
// first token, and, from the gateway's access log joined on the request
// id, the backend that answered, its attempts, what hedging did and its
// wait in the gateway's queue. It is how a p99 is taken apart: which
// requests were slow, where they went and when. Tracing turns the
// gateway's access log on, which costs a little CPU;
// the table's figures of a traced run are not comparable with untraced
// ones on a busy machine.

// traceEntry is one request of the well-behaved client.
type traceEntry struct {
	at   time.Duration // since its phase started
	ttft time.Duration
	out  outcome
	id   string // X-Request-Id
}

// tracer collects one phase's entries; safe for concurrent use.
type tracer struct {
	start   time.Time
	mu      sync.Mutex
	entries []traceEntry
	status  []statusLine // /status samples, when taken
}

func newTracer() *tracer { return &tracer{start: time.Now()} }

// traced records a request in t's trace, if it has one.
func (t *tally) traced(sent time.Time, o outcome, ttft time.Duration, head http.Header) {
	tr := t.trace
	if tr == nil {
		return
	}
	e := traceEntry{at: sent.Sub(tr.start), ttft: ttft, out: o}
	if head != nil {
		e.id = head.Get("X-Request-Id")
	}
	tr.mu.Lock()
	tr.entries = append(tr.entries, e)
	tr.mu.Unlock()
}

// accessLine is what a trace takes from an access log line.
type accessLine struct {
	Msg      string  `json:"msg"`
	ID       string  `json:"request_id"`
	Backend  string  `json:"backend"`
	Attempts int     `json:"attempts"`
	Hedge    string  `json:"hedge"`
	Queued   float64 `json:"queued_ms"`
	TTFT     float64 `json:"ttft_ms"`
}

// readAccessLog reads the gateway's access lines by request id.
func readAccessLog(path string) map[string]accessLine {
	out := map[string]accessLine{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l accessLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "request" && l.ID != "" {
			out[l.ID] = l
		}
	}
	return out
}

// writeTrace writes one scenario's phases to w, the entries of each in
// the order they were sent, joined with the gateway's access log.
func writeTrace(w io.Writer, scenario string, backends []string, dir string, phases map[string]*tracer) {
	access := readAccessLog(filepath.Join(dir, "gateway.log"))
	fmt.Fprintf(w, "# %s: backends %v (faults hit the first)\n", scenario, backends)
	fmt.Fprintln(w, "# scenario phase sent_ms ttft_ms outcome backend attempts hedge queued_ms gateway_ttft_ms request_id")
	for _, name := range []string{"calm", "attack"} {
		tr := phases[name]
		if tr == nil {
			continue
		}
		tr.mu.Lock()
		entries := slices.Clone(tr.entries)
		status := slices.Clone(tr.status)
		tr.mu.Unlock()
		slices.SortFunc(entries, func(a, b traceEntry) int { return int(a.at - b.at) })
		for _, e := range entries {
			l := access[e.id]
			hedge := l.Hedge
			if hedge == "" {
				hedge = "-"
			}
			fmt.Fprintf(w, "%s %s %d %d %s %s %d %s %.1f %.1f %s\n", scenario, name, e.at.Milliseconds(),
				e.ttft.Milliseconds(), outcomeName(e.out), orDash(l.Backend), l.Attempts, hedge, l.Queued, l.TTFT, orDash(e.id))
		}
		for _, s := range status {
			fmt.Fprintf(w, "%s %s status %d %s\n", scenario, name, s.at.Milliseconds(), s.text)
		}
	}
}

func outcomeName(o outcome) string {
	switch o {
	case served:
		return "served"
	case refused:
		return "refused"
	}
	return "unannounced"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// statusSample is what a trace keeps of one /status snapshot: per backend
// in flight/limit, peak-EWMA latency and the engine's running/waiting;
// and the model queue's in use/capacity/queued.
type statusSample struct {
	Models []struct {
		Backends []struct {
			Name     string  `json:"name"`
			Inflight int64   `json:"inflight"`
			Limit    int     `json:"limit"`
			EWMA     float64 `json:"ewma_latency_ms"`
			Scraped  *struct {
				Running float64 `json:"running"`
				Waiting float64 `json:"waiting"`
			} `json:"scraped"`
		} `json:"backends"`
		Queue *struct {
			InUse    int `json:"in_use"`
			Capacity int `json:"capacity"`
			Queued   int `json:"queued"`
		} `json:"queue"`
	} `json:"models"`
}

func (s statusSample) String() string {
	var b []byte
	for _, m := range s.Models {
		if m.Queue != nil {
			b = fmt.Appendf(b, "queue %d/%d+%d", m.Queue.InUse, m.Queue.Capacity, m.Queue.Queued)
		}
		for _, be := range m.Backends {
			b = fmt.Appendf(b, " | %s %d/%d ewma %.0f", be.Name, be.Inflight, be.Limit, be.EWMA)
			if be.Scraped != nil {
				b = fmt.Appendf(b, " eng %.0f+%.0f", be.Scraped.Running, be.Scraped.Waiting)
			}
		}
	}
	return string(b)
}

// sampleStatus adds a /status line to tr every interval until ctx ends.
func sampleStatus(ctx context.Context, c *http.Client, url string, tr *tracer, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		resp, err := c.Get(url)
		if err != nil {
			continue
		}
		var s statusSample
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err == nil {
			tr.mu.Lock()
			tr.status = append(tr.status, statusLine{at: time.Since(tr.start), text: s.String()})
			tr.mu.Unlock()
		}
	}
}

type statusLine struct {
	at   time.Duration
	text string
}
