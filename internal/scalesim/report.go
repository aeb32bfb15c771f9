package scalesim

import (
	"math"
	"slices"
	"time"
)

// Summary is what a run scores.
type Summary struct {
	Controller string
	Requests   int
	WithinSLO  int // got a first token within the SLO
	Refused    int
	P99TTFT    time.Duration // over answered requests
	// ServerMinutes is the cost: trace minutes × servers running
	// (starting and draining ones included).
	ServerMinutes float64
	// ViolationMinutes: trace minutes in which fewer than 95% of the
	// requests that arrived got a first token within the SLO.
	ViolationMinutes int
	// PeakReady is, per peak, the trace minutes from its start until the
	// pool first served with enough servers for the peak's need (at the
	// nominal service rate); 0: enough already; NaN: not within an hour
	// after the peak's top window.
	PeakReady []float64
}

// Peak is a sharp rise in demand: what a controller must catch up with.
type Peak struct {
	Start, Top int     // window indices: the first window of the rise, its highest in the hour after
	Need       float64 // the trace rate of Top
}

// Peaks finds the rises of the replay: a window at least a quarter of the
// replay's busiest window above the lowest of the hour before it. The rise
// starts after that lowest window; its level is the highest window of the
// hour from the rise; the next rise is looked for an hour after it.
func Peaks(w *Workload) []Peak {
	perHour := max(int(time.Hour/w.Window), 1)
	top := slices.Max(w.Rates)
	var out []Peak
	for i := 1; i < len(w.Rates); i++ {
		lo := max(0, i-perHour)
		low := lo
		for j := lo; j < i; j++ {
			if w.Rates[j] <= w.Rates[low] {
				low = j
			}
		}
		if w.Rates[i]-w.Rates[low] < 0.25*top {
			continue
		}
		p := Peak{Start: low + 1, Top: i}
		for j := i; j < min(i+perHour, len(w.Rates)); j++ {
			if w.Rates[j] > w.Rates[p.Top] {
				p.Top = j
			}
		}
		p.Need = w.Rates[p.Top]
		out = append(out, p)
		i = p.Top + perHour
	}
	return out
}

// Summarise scores a run. need converts a trace rate to servers.
func Summarise(w *Workload, r *Result, slo time.Duration, need func(rate float64) float64) Summary {
	s := Summary{Controller: r.Controller, Requests: len(r.Requests)}
	minute := 60 / w.Compress
	nMin := len(r.Timeline)
	total, ok := make([]int, nMin+1), make([]int, nMin+1)
	var ttft []float64
	for i := range r.Requests {
		q := &r.Requests[i]
		m := min(int(q.arrival/minute), nMin)
		total[m]++
		switch {
		case q.refused:
			s.Refused++
		case q.firstToken > 0:
			t := q.firstToken - q.arrival
			ttft = append(ttft, t)
			if t <= slo.Seconds() {
				s.WithinSLO++
				ok[m]++
			}
		}
	}
	for m := range total {
		if total[m] > 0 && float64(ok[m]) < 0.95*float64(total[m]) {
			s.ViolationMinutes++
		}
	}
	if len(ttft) > 0 {
		slices.Sort(ttft)
		s.P99TTFT = time.Duration(ttft[min(len(ttft)-1, int(0.99*float64(len(ttft))))] * float64(time.Second))
	}
	s.ServerMinutes = r.ServerSeconds * w.Compress / 60
	perWindow := int(w.Window / time.Minute)
	for _, p := range Peaks(w) {
		want := int(math.Ceil(need(p.Need) - 1e-9))
		ready := math.NaN()
		for m := p.Start * perWindow; m < len(r.Timeline) && m <= (p.Top+1)*perWindow+60; m++ {
			if r.Timeline[m].Serving >= want {
				ready = float64(m - p.Start*perWindow)
				break
			}
		}
		s.PeakReady = append(s.PeakReady, ready)
	}
	return s
}
