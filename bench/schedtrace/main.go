// Command schedtrace reads a Go runtime trace (go tool trace's input, e.g.
// /debug/pprof/trace?seconds=5 of `sluice serve --pprof ADDR` or
// `bench/bareproxy --pprof ADDR`) of a server run with GOMAXPROCS=1 and
// says what kept its request goroutines waiting: per kind of goroutine
// (its entry function) the P time it took and how often it woke; the GC
// mark phases and assists; for request goroutines (net/http.(*conn).serve)
// the runnable-to-running waits and, for the long ones, which kinds of
// goroutine held the P meanwhile. This is the tail a server inflicts on
// itself (background work, collections, other requests' work), apart
// from what the machine does to it, which a wall-clock p99 mixes in.
//
//	go run ./bench/schedtrace [--min-wait 200us] trace.out
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"golang.org/x/exp/trace"
)

// requestKind is the entry function of a net/http server's connection
// goroutine, which runs the handler.
const requestKind = "net/http.(*conn).serve"

func main() {
	minWait := flag.Duration("min-wait", 200*time.Microsecond, "a request goroutine's wait this long or longer is attributed to what ran meanwhile")
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	a, err := read(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "schedtrace:", err)
		os.Exit(1)
	}
	a.writeKinds(os.Stdout)
	a.writeGC(os.Stdout)
	a.writeWaits(os.Stdout, *minWait)
}

// goroutine is what is known of one goroutine.
type goroutine struct {
	kind       string // entry function, from the first stack seen
	runnableAt trace.Time
	since      trace.Time // running since
	running    bool
	run        time.Duration
	wakes      int
	longest    time.Duration // longest stretch on the P
}

// span is a stretch of time, held by goroutine g where that matters.
type span struct {
	from, to trace.Time
	g        trace.GoID
}

type analysis struct {
	gs          map[trace.GoID]*goroutine
	runs        []span // every stretch a goroutine ran, in order
	waits       []span // every runnable-to-running wait
	marks       []span // GC mark phases
	markFrom    trace.Time
	assistFrom  map[trace.GoID]trace.Time
	assists     time.Duration
	first, last trace.Time
}

func read(r io.Reader) (*analysis, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("read trace: %w", err)
	}
	a := &analysis{gs: map[trace.GoID]*goroutine{}, markFrom: -1, assistFrom: map[trace.GoID]trace.Time{}, first: -1}
	for {
		ev, err := tr.ReadEvent()
		if err == io.EOF {
			return a, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read trace: %w", err)
		}
		if a.first < 0 {
			a.first = ev.Time()
		}
		a.last = ev.Time()
		switch ev.Kind() {
		case trace.EventRangeBegin, trace.EventRangeActive, trace.EventRangeEnd:
			a.onRange(ev)
		case trace.EventStateTransition:
			a.onState(ev)
		}
	}
}

func (a *analysis) goroutine(id trace.GoID) *goroutine {
	g := a.gs[id]
	if g == nil {
		g = &goroutine{}
		a.gs[id] = g
	}
	return g
}

func (a *analysis) onRange(ev trace.Event) {
	t, begin := ev.Time(), ev.Kind() != trace.EventRangeEnd
	switch ev.Range().Name {
	case "GC concurrent mark phase":
		if begin {
			a.markFrom = t
		} else if a.markFrom >= 0 {
			a.marks = append(a.marks, span{from: a.markFrom, to: t})
			a.markFrom = -1
		}
	case "GC mark assist":
		if begin {
			a.assistFrom[ev.Goroutine()] = t
		} else if from, ok := a.assistFrom[ev.Goroutine()]; ok {
			a.assists += t.Sub(from)
			delete(a.assistFrom, ev.Goroutine())
		}
	}
}

func (a *analysis) onState(ev trace.Event) {
	st := ev.StateTransition()
	if st.Resource.Kind != trace.ResourceGoroutine {
		return
	}
	id, t := st.Resource.Goroutine(), ev.Time()
	g := a.goroutine(id)
	if g.kind == "" {
		g.kind = entry(st.Stack) // a new goroutine's starting stack
	}
	if g.kind == "" && ev.Goroutine() == id {
		g.kind = entry(ev.Stack()) // its own stack as it blocks
	}
	from, to := st.Goroutine()
	switch {
	case to == trace.GoRunnable:
		g.runnableAt = t
		if from != trace.GoRunning {
			g.wakes++
		}
	case to == trace.GoRunning:
		if from == trace.GoRunnable && g.runnableAt > 0 {
			a.waits = append(a.waits, span{from: g.runnableAt, to: t, g: id})
		}
		g.running, g.since = true, t
	}
	if from == trace.GoRunning && to != trace.GoRunning && g.running {
		d := t.Sub(g.since)
		g.run += d
		g.longest = max(g.longest, d)
		a.runs = append(a.runs, span{from: g.since, to: t, g: id})
		g.running = false
	}
}

// entry is the outermost function of a stack: the goroutine's entry.
func entry(s trace.Stack) string {
	last := ""
	for f := range s.Frames() {
		last = f.Func
	}
	return last
}

func (a *analysis) seconds() float64 { return a.last.Sub(a.first).Seconds() }

func (a *analysis) kindOf(id trace.GoID) string {
	if k := a.gs[id].kind; k != "" {
		return k
	}
	return "?"
}

// writeKinds prints P time, wake-ups and longest stretch per kind.
func (a *analysis) writeKinds(w io.Writer) {
	type sum struct {
		n, wakes int
		run, max time.Duration
	}
	by := map[string]*sum{}
	for id, g := range a.gs {
		k := a.kindOf(id)
		if by[k] == nil {
			by[k] = &sum{}
		}
		s := by[k]
		s.n, s.wakes, s.run, s.max = s.n+1, s.wakes+g.wakes, s.run+g.run, max(s.max, g.longest)
	}
	kinds := make([]string, 0, len(by))
	for k := range by {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return by[kinds[i]].run > by[kinds[j]].run })
	secs := a.seconds()
	fmt.Fprintf(w, "trace %.3f s\n%-60s %6s %10s %8s %10s\n", secs, "goroutine kind (entry function)", "n", "P ms/s", "wakes/s", "longest")
	for _, k := range kinds {
		s := by[k]
		fmt.Fprintf(w, "%-60.60s %6d %10.3f %8.1f %10s\n", k, s.n, ms(s.run)/secs, float64(s.wakes)/secs, s.max.Round(time.Microsecond))
	}
}

func (a *analysis) writeGC(w io.Writer) {
	var total time.Duration
	for _, m := range a.marks {
		total += m.to.Sub(m.from)
	}
	fmt.Fprintf(w, "\nGC mark phases: %d, %.3f ms in all; assists %.3f ms\n", len(a.marks), ms(total), ms(a.assists))
}

// writeWaits prints the request goroutines' waits for the P and, for
// those that lasted least or longer, the P time each kind of goroutine took during
// them (a stretch overlapping several waits counts for each).
func (a *analysis) writeWaits(w io.Writer, least time.Duration) {
	var ds []time.Duration
	blame := map[string]time.Duration{}
	long, inMark := 0, 0
	for _, wt := range a.waits {
		if a.kindOf(wt.g) != requestKind {
			continue
		}
		d := wt.to.Sub(wt.from)
		ds = append(ds, d)
		if d < least {
			continue
		}
		long++
		if overlaps(a.marks, wt) {
			inMark++
		}
		i := sort.Search(len(a.runs), func(i int) bool { return a.runs[i].to > wt.from })
		for ; i < len(a.runs) && a.runs[i].from < wt.to; i++ {
			if r := a.runs[i]; r.g != wt.g {
				blame[a.kindOf(r.g)] += min(r.to, wt.to).Sub(max(r.from, wt.from))
			}
		}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	fmt.Fprintf(w, "\nrequest goroutines' waits for the P: n=%d p50 %v p99 %v p99.9 %v max %v\n", len(ds),
		pct(ds, 50), pct(ds, 99), pct(ds, 99.9), pct(ds, 100))
	fmt.Fprintf(w, "waits >= %v: %d (%d during a GC mark phase); P time during them by kind:\n", least, long, inMark)
	kinds := make([]string, 0, len(blame))
	for k := range blame {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return blame[kinds[i]] > blame[kinds[j]] })
	for _, k := range kinds {
		fmt.Fprintf(w, "  %-60.60s %8.3f ms\n", k, ms(blame[k]))
	}
}

func overlaps(spans []span, s span) bool {
	for _, m := range spans {
		if m.from < s.to && m.to > s.from {
			return true
		}
	}
	return false
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p/100*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
