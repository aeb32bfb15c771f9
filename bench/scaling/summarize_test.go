package main

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/scaling"
)

// polls builds one poll a second from need (the signal's terms now) and
// held (desired backends as served).
func polls(need, held func(t float64) float64, until float64) []Poll {
	var out []Poll
	for t := 1.0; t <= until; t++ {
		s := scaling.Signal{DesiredBackends: held(t), Need: scaling.Need{Demand: need(t)}}
		out = append(out, Poll{T: t, Signal: s})
	}
	return out
}

// A peak's need rises at 20 s, the refusal comes at 30 s, load drops at
// 40 s and the need falls at 45 s; the signal is held 60 s after the last
// poll that needed more than the pool.
func TestSummarizeJudgesTheNeedAndTheHold(t *testing.T) {
	env := []phase{{D: 40 * time.Second, From: 1, To: 1}, {D: 80 * time.Second, From: 0.3, To: 0.3}}
	need := func(t float64) float64 {
		if t >= 20 && t < 45 {
			return 3
		}
		return 1
	}
	const hold = 60.0
	heldFrom := func(fallAt float64) func(float64) float64 {
		return func(t float64) float64 {
			if t >= 20 && t < fallAt {
				return 3
			}
			return need(t)
		}
	}
	res := &bench.Result{Records: []bench.Record{{Planned: 30 * time.Second, Status: 503}, {Planned: 31 * time.Second, Status: 200}}}
	o := options{Backends: 2, Envelope: env, Poll: time.Second}

	for _, c := range []struct {
		name   string
		fallAt float64
		until  float64
		ok     bool
	}{
		{"falls when the hold ends", 44 + hold + 1, 120, true},
		{"falls before the hold ends", 60, 120, false},
		{"falls long after the hold ends", 44 + hold + 10, 120, false},
		{"still held when the run ended first", 1e9, 90, true},
		{"still held long after the hold ended", 1e9, 120, false},
	} {
		rep := &Report{ScaleInHold: hold, Polls: polls(need, heldFrom(c.fallAt), c.until)}
		summarize(rep, o, res)
		if len(rep.Peaks) != 1 {
			t.Fatalf("%s: %d peaks, want 1", c.name, len(rep.Peaks))
		}
		pk := rep.Peaks[0]
		if !pk.Above || pk.Rise != 20 || pk.FirstRefusal != 30 || pk.Lead != 10 || pk.FellBack != 45 || pk.HoldEnds != 44+hold {
			t.Fatalf("%s: %+v", c.name, pk)
		}
		if got := pk.heldOK(c.until, 1); got != c.ok {
			t.Errorf("%s: held signal judged %v, want %v (%+v)", c.name, got, c.ok, pk)
		}
		if rep.HeldBelowNeed != 0 {
			t.Errorf("%s: %d polls counted below the need", c.name, rep.HeldBelowNeed)
		}
	}

	// A need back above the pool before the hold ends renews it: still
	// held then is right.
	again := func(t float64) float64 {
		if t >= 70 && t < 75 {
			return 3
		}
		return need(t)
	}
	rep := &Report{ScaleInHold: hold, Polls: polls(again, heldFrom(1e9), 120)}
	summarize(rep, o, res)
	if pk := rep.Peaks[0]; !pk.Renewed || !pk.heldOK(120, 1) {
		t.Fatalf("renewed: %+v", pk)
	}

	// Without a hold the signal is the need: it falls with it.
	rep = &Report{Polls: polls(need, need, 60)}
	summarize(rep, o, res)
	if pk := rep.Peaks[0]; pk.HoldEnds != 45 || pk.HeldFellBack != 45 || !pk.heldOK(60, 1) {
		t.Fatalf("no hold: %+v", pk)
	}
	// A signal under its own need is counted.
	rep = &Report{ScaleInHold: hold, Polls: polls(need, func(float64) float64 { return 1 }, 60)}
	summarize(rep, o, res)
	if rep.HeldBelowNeed != 25 {
		t.Fatalf("%d polls below the need, want 25", rep.HeldBelowNeed)
	}
}
