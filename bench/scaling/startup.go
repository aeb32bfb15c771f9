package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/bench"
)

// Startup is what happened before the envelope's first ramp: a stretch the
// pool serves (0.5x by default), where nothing should be refused and no
// scaling signal should rise. Refusals there are no ramp's; their cause is
// the gateway's own warm-up (adaptive limits in slow start, a drain rate
// measured from few completions) or the machine (a stall).
type Startup struct {
	End          float64        `json:"end_s"` // when the first ramp starts
	Refusals     int            `json:"refusals"`
	FirstRefusal float64        `json:"first_refusal_s"` // -1: none
	ByStatus     map[string]int `json:"refusals_by_status"`
	// QueueRejections is sluice_queue_rejections_total by reason, read at
	// End: the gateway queue's own refusals (saturated, shed, deadline, …).
	// Refusals not counted there came from elsewhere (a backend's 503
	// relayed). Nil when the read failed.
	QueueRejections map[string]float64 `json:"queue_rejections_by_reason"`
	// The pool at the first poll after the first refusal: slots (the sum of
	// the backends' limits), slots in use and requests queued.
	Capacity int `json:"slots_at_first_refusal"`
	InUse    int `json:"in_use_at_first_refusal"`
	Queued   int `json:"queued_at_first_refusal"`
	// MachineBusy is the share of all cores busy over [0, End] (from
	// /proc/stat); OwnCPU the share of all cores this process used (the
	// load generator, the gateway and the simulators run in it): the rest
	// of MachineBusy is other jobs'. -1: not measured.
	MachineBusy float64 `json:"machine_busy"`
	OwnCPU      float64 `json:"own_cpu"`
	LoadAvg     string  `json:"loadavg_at_end"`
	// MaxPollGap is the longest gap between polls before End, in seconds:
	// a stall of the machine shows as a gap well over the poll interval.
	MaxPollGap float64 `json:"max_poll_gap_s"`
}

// startupEnd is when the envelope's first ramp (a phase whose load rises)
// begins; the whole envelope when none does.
func startupEnd(env []phase) time.Duration {
	var t time.Duration
	for _, p := range env {
		if p.To > p.From {
			return t
		}
		t += p.D
	}
	return t
}

// cpuSample is the machine's and this process's CPU time so far.
type cpuSample struct {
	busy, total float64 // machine, clock ticks over all cores
	own         time.Duration
	at          time.Time
	ok          bool
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	s.own = ownCPU()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return s
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return s
		}
		if i >= 8 { // guest time is counted in user time already
			break
		}
		s.total += n
		if i != 3 && i != 4 { // idle, iowait
			s.busy += n
		}
	}
	s.ok = true
	return s
}

// shares is the machine's busy share and this process's share of all
// cores between a and b (-1 when not measured).
func shares(a, b cpuSample, cpus int) (machine, own float64) {
	machine, own = -1, -1
	if !a.ok || !b.ok || b.total <= a.total {
		return
	}
	machine = (b.busy - a.busy) / (b.total - a.total)
	if wall := b.at.Sub(a.at).Seconds(); wall > 0 && cpus > 0 {
		own = (b.own - a.own).Seconds() / wall / float64(cpus)
	}
	return
}

// watchStartup waits until end after start, then reads what the start-up
// left: the queue's rejections by reason, the CPU shares since before, and
// the load average. It returns early (with what it has) when ctx ends.
func watchStartup(ctx context.Context, admin string, start time.Time, end time.Duration, before cpuSample, cpus int) Startup {
	st := Startup{End: end.Seconds(), MachineBusy: -1, OwnCPU: -1}
	t := time.NewTimer(time.Until(start.Add(end)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return st
	case <-t.C:
	}
	st.MachineBusy, st.OwnCPU = shares(before, sampleCPU(), cpus)
	st.LoadAvg = benchkit.Loadavg()
	st.QueueRejections, _ = queueRejections(ctx, admin)
	return st
}

// queueRejections reads sluice_queue_rejections_total for the model from
// the admin listener's /metrics.
func queueRejections(ctx context.Context, admin string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: status %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		reason, v, ok := rejectionLine(sc.Text())
		if ok && v > 0 {
			out[reason] = v
		}
	}
	return out, sc.Err()
}

// rejectionLine parses one exposition line of
// sluice_queue_rejections_total{model="sim-model",reason="…"} N.
func rejectionLine(line string) (reason string, v float64, ok bool) {
	rest, found := strings.CutPrefix(line, "sluice_queue_rejections_total{")
	if !found {
		return "", 0, false
	}
	labels, value, found := strings.Cut(rest, "} ")
	if !found || !strings.Contains(labels, `model="`+model+`"`) {
		return "", 0, false
	}
	_, reason, found = strings.Cut(labels, `reason="`)
	if !found {
		return "", 0, false
	}
	reason, _, _ = strings.Cut(reason, `"`)
	v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
	return reason, v, err == nil
}

// summarizeStartup counts the refusals that ended before the first ramp
// and reads the pool at the first poll after the first of them.
func summarizeStartup(st *Startup, res *bench.Result, polls []Poll) {
	st.FirstRefusal = -1
	st.ByStatus = map[string]int{}
	for i := range res.Records {
		r := &res.Records[i]
		t := benchkit.Ended(r).Seconds()
		if !refused(r) || t >= st.End {
			continue
		}
		st.Refusals++
		st.ByStatus[strconv.Itoa(r.Status)]++
		if st.FirstRefusal < 0 || t < st.FirstRefusal {
			st.FirstRefusal = t
		}
	}
	last := 0.0
	for _, p := range polls {
		if p.T < st.End {
			st.MaxPollGap = max(st.MaxPollGap, p.T-last)
			last = p.T
		}
	}
	if st.FirstRefusal < 0 {
		return
	}
	for _, p := range polls {
		if p.T >= st.FirstRefusal {
			st.Capacity, st.InUse, st.Queued = p.Signal.Capacity, p.Signal.InUse, p.Signal.Queued
			return
		}
	}
}

func (st Startup) write(e *benchkit.ErrWriter) {
	first := "none"
	if st.FirstRefusal >= 0 {
		first = fmt.Sprintf("first at t=%.1f s (then: %d slots, %d in use, %d queued)", st.FirstRefusal, st.Capacity, st.InUse, st.Queued)
	}
	reasons := "not read"
	if st.QueueRejections != nil {
		reasons = benchkit.ByValue(st.QueueRejections)
		if len(st.QueueRejections) == 0 {
			reasons = "none"
		}
	}
	pct := func(v float64) string {
		if v < 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.0f%%", 100*v)
	}
	e.Printf("Start-up (t < %.0f s, before the first ramp): %d refusals, %s; by status %s; the queue's rejections by reason at t=%.0f s: %s. Machine: %s of all cores busy, this process %s; load avg %s; longest gap between polls %.1f s.\n\n",
		st.End, st.Refusals, first, byStatus(st.ByStatus), st.End, reasons, pct(st.MachineBusy), pct(st.OwnCPU), st.LoadAvg, st.MaxPollGap)
}

func byStatus(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	f := make(map[string]float64, len(m))
	for k, v := range m {
		f[k] = float64(v)
	}
	return benchkit.ByValue(f)
}
