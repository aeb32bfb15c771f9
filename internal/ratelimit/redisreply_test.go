package ratelimit

import (
	"context"
	"testing"
	"time"
)

// An error reply of a reachable Redis (here OOM: a maxmemory of 1 byte
// with noeviction refuses the script's writes) is Redis answering about
// the call, not an outage (redisconn.IsOutage): each such call takes the
// failure mode, but Redis is not bypassed, nothing logs it as
// unavailable, and the first call after the reply clears is Redis'.
func TestErrorReplyIsNoOutage(t *testing.T) {
	r := newFailoverRig(t, FailClosed)
	l := Limit{Rate: 0.001, Burst: 5} // capacity 6; Redis TIME judges, so no refill to speak of
	now := time.Unix(1000, 0)
	if _, err := r.fs.Take(context.Background(), "k", l, 1, now); err != nil {
		t.Fatalf("first take: %v", err)
	}
	if _, err := r.srv.Do("CONFIG", "SET", "maxmemory", "1"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := r.fs.Take(context.Background(), "k", l, 1, now); err == nil {
			t.Fatalf("take %d under OOM answered without error", i)
		}
	}
	if r.fs.Degraded() {
		t.Error("an OOM reply bypassed Redis as if it were down")
	}
	if n := r.logs.count("rate limit store unavailable"); n != 0 {
		t.Errorf("%d 'unavailable' lines for a reachable Redis", n)
	}
	if _, err := r.srv.Do("CONFIG", "SET", "maxmemory", "0"); err != nil {
		t.Fatal(err)
	}
	// The same instant: no back-off has passed, so only a store that was
	// never bypassed answers from Redis here.
	d, err := r.fs.Take(context.Background(), "k", l, 1, now)
	if err != nil || !d.Allowed || d.Remaining != 4 {
		t.Fatalf("after OOM cleared: %+v, %v; want the second of 6 from Redis' bucket (4 left)", d, err)
	}
}

// A Redis that lost its script cache (SCRIPT FLUSH; a restart or a
// failover to a replica does the same) answers EVALSHA with NOSCRIPT:
// the store loads the script again and the bucket is judged as before,
// the request neither refused for the store's sake nor let through.
func TestScriptFlushReloads(t *testing.T) {
	r := newFailoverRig(t, FailClosed)
	l := Limit{Rate: 0.001, Burst: 1} // capacity 2
	now := time.Unix(1000, 0)
	for i := range 2 {
		if d, err := r.fs.Take(context.Background(), "k", l, 1, now); err != nil || !d.Allowed {
			t.Fatalf("take %d: %+v, %v", i, d, err)
		}
	}
	for _, ops := range [][]Op{
		{{Key: "k", Limit: l, Cost: 1}},
		{{Key: "k", Limit: l, Cost: 1}, {Key: "other", Limit: l, Cost: 1}},
	} {
		if _, err := r.srv.Do("SCRIPT", "FLUSH"); err != nil {
			t.Fatal(err)
		}
		ds, err := r.fs.Apply(context.Background(), ops, now)
		if err != nil {
			t.Fatalf("%d ops after SCRIPT FLUSH: %v", len(ops), err)
		}
		if ds[0].Allowed {
			t.Errorf("%d ops after SCRIPT FLUSH: a third take of a bucket of 2 was allowed", len(ops))
		}
	}
	if got := r.errorsTotal(t); got != 0 {
		t.Errorf("store errors %v after SCRIPT FLUSH, want 0", got)
	}
}
