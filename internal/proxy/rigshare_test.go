package proxy

// Rigs this package's tests share with its external ones (package
// proxy_test sees them as proxy.StepClock and proxy.ReadPast): exported
// here only, in a _test.go file, so no build of the gateway has them.

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// StepClock is a clock the test moves; safe to read from the relay.
type StepClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewStepClock is a StepClock at now.
func NewStepClock(now time.Time) *StepClock { return &StepClock{now: now} }

// Now is the clock's time (Options.Now).
func (c *StepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *StepClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// ReadPast is a transport that says when a Read of host's answer body
// starts after at least after bytes of it came: whoever reads it (the
// relay, a hedge race's peek) has dealt with them.
type ReadPast struct {
	http.RoundTripper
	host   string
	after  int
	passed chan struct{}
	once   sync.Once
}

// NewReadPast wraps rt to tell when host's answer is read past its first
// after bytes.
func NewReadPast(rt http.RoundTripper, host string, after int) *ReadPast {
	return &ReadPast{RoundTripper: rt, host: host, after: after, passed: make(chan struct{})}
}

// Passed is closed once a Read of host's answer starts past after bytes.
func (t *ReadPast) Passed() <-chan struct{} { return t.passed }

// RoundTrip is rt's, with host's answer body watched.
func (t *ReadPast) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.RoundTripper.RoundTrip(req)
	if err == nil && req.URL.Host == t.host {
		resp.Body = &readPastBody{ReadCloser: resp.Body, t: t}
	}
	return resp, err
}

type readPastBody struct {
	io.ReadCloser
	t   *ReadPast
	got int
}

func (b *readPastBody) Read(p []byte) (int, error) {
	if b.got >= b.t.after {
		b.t.once.Do(func() { close(b.t.passed) })
	}
	n, err := b.ReadCloser.Read(p)
	b.got += n
	return n, err
}
