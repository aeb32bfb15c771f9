package admission

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a settable clock; safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// capacity is an adjustable capacity function.
type capacity struct{ n atomic.Int64 }

func newCapacity(n int) *capacity {
	c := &capacity{}
	c.n.Store(int64(n))
	return c
}

func (c *capacity) get() int  { return int(c.n.Load()) }
func (c *capacity) set(n int) { c.n.Store(int64(n)) }

// eventually waits for cond, yielding between checks. It asserts a state
// that another goroutine reaches, not a duration: the generous bound only
// turns a hang into a failure.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		runtime.Gosched()
	}
}

// result is what a background Acquire returned.
type result struct {
	t   *Ticket
	err error
}

// acquireAsync runs Acquire in a goroutine owned by the test; the returned
// channel delivers its result.
func acquireAsync(q *Queue, ctx context.Context, r Request) <-chan result {
	ch := make(chan result, 1)
	go func() {
		t, err := q.Acquire(ctx, r)
		ch <- result{t, err}
	}()
	return ch
}

// await returns a background Acquire's result, failing if it blocks.
func await(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(time.Minute): // a hang guard
		t.Fatal("Acquire blocked")
		return result{}
	}
}

// submitT is submit for tests that expect the request to be queued.
func submitT(t testing.TB, q *Queue, r Request) *waiter {
	t.Helper()
	tk, w, err := q.submit(r)
	if err != nil || tk != nil {
		t.Fatalf("submit(%+v) = %v, %v; want queued", r, tk, err)
	}
	return w
}

// grantedT is submit for tests that expect a slot at once.
func grantedT(t testing.TB, q *Queue, r Request) *Ticket {
	t.Helper()
	tk, _, err := q.submit(r)
	if err != nil || tk == nil {
		t.Fatalf("submit(%+v) = %v, %v; want a ticket", r, tk, err)
	}
	return tk
}
