package main

import (
	"math"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
)

func TestEnvelopeParsesAndIntegrates(t *testing.T) {
	env, err := parseEnvelope("10s:0.5,20s:0.5>1.5,10s:0.3")
	if err != nil {
		t.Fatal(err)
	}
	if span(env) != 40*time.Second {
		t.Fatalf("span %s", span(env))
	}
	// 10×0.5 + 20×1.0 (the ramp's mean) + 10×0.3 capacity-seconds.
	if got := cumulative(env, span(env)); math.Abs(got-28) > 1e-9 {
		t.Fatalf("cumulative %g, want 28", got)
	}
	if got := loadAt(env, 20*time.Second); math.Abs(got-1.0) > 1e-9 {
		t.Fatalf("load mid-ramp %g, want 1", got)
	}
	if d := drops(env); len(d) != 1 || d[0] != 30 {
		t.Fatalf("drops %v, want [30]", d)
	}
	for _, bad := range []string{"", "10s", "x:1", "10s:-1", "10s:0", "10s:a>b"} {
		if _, err := parseEnvelope(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Warping keeps the order and the tokens and puts each request where the
// envelope's cumulative load reaches its share of the slice.
func TestWarpFollowsTheEnvelope(t *testing.T) {
	env := []phase{{D: 10 * time.Second, From: 1, To: 1}, {D: 10 * time.Second, From: 3, To: 3}}
	var slice []bench.Arrival
	for i := range 40 { // evenly spaced over 40 s of trace time
		slice = append(slice, bench.Arrival{At: time.Duration(i) * time.Second, InputTokens: i})
	}
	out := warp(slice, 40*time.Second, env)
	first := 0
	for i, a := range out {
		if a.InputTokens != i || i > 0 && a.At < out[i-1].At {
			t.Fatalf("order or tokens changed at %d: %+v", i, a)
		}
		if a.At < 10*time.Second {
			first++
		}
	}
	// A quarter of the envelope's load (10 of 40 capacity-seconds) is in
	// the first phase: a quarter of the requests.
	if first != 10 {
		t.Fatalf("%d requests in the first phase, want 10", first)
	}
}
