package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"
)

// handTimer is a send bound's timer the test fires by hand.
type handTimer struct{ stopped bool }

func (h *handTimer) Stop() bool               { h.stopped = true; return true }
func (h *handTimer) Reset(time.Duration) bool { return true }

// The send bound cuts a request whose transport pulled nothing of its
// body for sendBoundChecks looks in a row (stream_idle to 1.25 x it after
// the last pull), never before the first pull, and a pull restarts the
// count: the timer is fired by hand, so no clock decides.
func TestSendBoundCutsAfterAQuietBound(t *testing.T) {
	var tick func()
	timer := &handTimer{}
	after := func(d time.Duration, f func()) Timer {
		if d != time.Second/sendBoundChecks {
			t.Errorf("timer every %v, want a quarter of the bound", d)
		}
		tick = f
		return timer
	}
	pull := make(chan struct{}) // the test asks the transport to pull 1 KiB
	pulled := make(chan struct{})
	rt := func(req *http.Request) (*http.Response, error) {
		buf := make([]byte, 1<<10)
		for {
			select {
			case <-pull:
				if _, err := req.Body.Read(buf); err != nil {
					return nil, err
				}
				pulled <- struct{}{}
			case <-req.Context().Done():
				return nil, context.Cause(req.Context())
			}
		}
	}
	body := bytes.Repeat([]byte("x"), 1<<20)
	req, _ := http.NewRequest(http.MethodPost, "https://backend.invalid/v1/chat/completions", io.NopCloser(bytes.NewReader(body)))
	req.ContentLength = int64(len(body))
	done := make(chan error, 1)
	go func() {
		_, err := roundTripBounded(rt, req, time.Second, after)
		done <- err
	}()
	step := func() { pull <- struct{}{}; <-pulled }
	cut := func() bool {
		select {
		case err := <-done:
			if !errors.Is(err, ErrSendTimeout) || !errors.Is(err, ErrFirstByteTimeout) {
				t.Fatalf("cut with %v, want ErrSendTimeout", err)
			}
			return true
		case <-time.After(50 * time.Millisecond): // only the no-cut case waits
			return false
		}
	}
	step() // tick is set once the round trip runs
	for range 10 {
		tick()
		step() // a pull between every two looks: never cut
	}
	if cut() {
		t.Fatal("cut while the transport pulled between every two looks")
	}
	tick() // sees the last pull
	for range sendBoundChecks - 1 {
		tick()
	}
	if cut() {
		t.Fatalf("cut after %d quiet looks, want %d", sendBoundChecks-1, sendBoundChecks)
	}
	tick()
	if !cut() {
		t.Fatalf("not cut after %d quiet looks", sendBoundChecks)
	}
}

// A body the transport wrote whole stops the watch: no cut, the timer
// stopped, however long the answer takes. Pulled whole is not written:
// until the transport reports the write, quiet looks still count.
func TestSendBoundEndsWithTheBody(t *testing.T) {
	var tick func()
	timer := &handTimer{}
	after := func(_ time.Duration, f func()) Timer { tick = f; return timer }
	body := bytes.Repeat([]byte("x"), 100<<10)
	req, _ := http.NewRequest(http.MethodPost, "https://backend.invalid/", io.NopCloser(bytes.NewReader(body)))
	req.ContentLength = int64(len(body))
	rt := func(req *http.Request) (*http.Response, error) {
		// As net/http reads a body of known length: never past it.
		if _, err := io.Copy(io.Discard, io.LimitReader(req.Body, req.ContentLength)); err != nil {
			return nil, err
		}
		for range sendBoundChecks - 1 { // the last piece waits to go out
			tick()
		}
		if timer.stopped || context.Cause(req.Context()) != nil {
			t.Fatal("watch ended with the body pulled whole but not written")
		}
		httptrace.ContextClientTrace(req.Context()).WroteRequest(httptrace.WroteRequestInfo{})
		if !timer.stopped {
			t.Error("timer still running with the body written whole")
		}
		for range 2 * sendBoundChecks {
			tick()
		}
		if err := context.Cause(req.Context()); err != nil {
			t.Errorf("request cancelled after its body went: %v", err)
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	}
	if _, err := roundTripBounded(rt, req, time.Second, after); err != nil {
		t.Fatal(err)
	}
}

// Before its first pull the transport is connecting or waiting for a
// stream: timeouts.connect's, not the send bound's, however many looks.
func TestSendBoundWaitsForTheFirstPull(t *testing.T) {
	var tick func()
	after := func(_ time.Duration, f func()) Timer { tick = f; return &handTimer{} }
	req, _ := http.NewRequest(http.MethodPost, "https://backend.invalid/", io.NopCloser(bytes.NewReader(make([]byte, 100<<10))))
	req.ContentLength = 100 << 10
	rt := func(req *http.Request) (*http.Response, error) {
		for range 4 * sendBoundChecks {
			tick()
		}
		if err := context.Cause(req.Context()); err != nil {
			t.Errorf("cut before the first pull: %v", err)
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	}
	if _, err := roundTripBounded(rt, req, time.Second, after); err != nil {
		t.Fatal(err)
	}
}
