package proxy

import (
	"context"
	"errors"
	"testing"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// An attempt Forward ends itself (cancelWithBackend) is still ended by its
// backend's retirement while in flight, and its own end's cause stays
// when the backend is retired after it. A hedge leg's hook
// (endWithBackend) frees itself when the request ends first.
func TestBackendRetirementHooks(t *testing.T) {
	newBackend := func() *endpoint.Backend {
		b, err := endpoint.New(endpoint.Spec{URL: "http://a:1"}, endpoint.HealthPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Run("retired in flight", func(t *testing.T) {
		b := newBackend()
		actx, raw := context.WithCancelCause(context.Background())
		cancel := cancelWithBackend(b, raw)
		b.Retire()
		<-actx.Done()
		if cause := context.Cause(actx); !errors.Is(cause, ErrBackendRetired) {
			t.Fatalf("cause %v, want ErrBackendRetired", cause)
		}
		cancel(nil) // the attempt's own end after it: harmless
	})
	t.Run("ended before the retirement", func(t *testing.T) {
		b := newBackend()
		actx, raw := context.WithCancelCause(context.Background())
		cancel := cancelWithBackend(b, raw)
		cancel(ErrStreamIdle)
		b.Retire()
		if cause := context.Cause(actx); !errors.Is(cause, ErrStreamIdle) {
			t.Fatalf("cause %v after a later retirement, want the attempt's own ErrStreamIdle", cause)
		}
	})
	t.Run("hedge leg: request ended first", func(t *testing.T) {
		b := newBackend()
		req, end := context.WithCancel(context.Background())
		actx, raw := context.WithCancelCause(req)
		endWithBackend(actx, b, raw)
		end()
		<-actx.Done()
		b.Retire()
		if cause := context.Cause(actx); !errors.Is(cause, context.Canceled) {
			t.Fatalf("cause %v, want the request's context.Canceled", cause)
		}
	})
}
