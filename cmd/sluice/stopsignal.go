package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// stopSignal is the cause of a command's context when SIGINT or SIGTERM
// stopped it: its text is signal.NotifyContext's ("interrupt signal
// received"), and it keeps the signal, whose number makes the exit status.
type stopSignal struct{ sig syscall.Signal }

func (s stopSignal) Error() string { return s.sig.String() + " signal received" }

// Is makes the cause a context.Canceled, as NotifyContext's is.
func (s stopSignal) Is(target error) bool { return target == context.Canceled }

// status is what a shell reports for a process the signal ended, 128 +
// its number: 130 for SIGINT, 143 for SIGTERM. A command that stops
// before the end on a signal exits so, not 1: a script or CI step can
// tell "interrupted" from "failed", as with other tools.
func (s stopSignal) status() int { return 128 + int(s.sig) }

// notifyStop is signal.NotifyContext for SIGINT and SIGTERM with a cause
// that keeps the signal. Later signals are swallowed until stop, which
// ends the watch (its goroutine) and releases the context.
func notifyStop(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case s := <-ch:
			sig, _ := s.(syscall.Signal)
			cancel(stopSignal{sig})
		case <-done:
		}
	})
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
			wg.Wait()
			cancel(context.Canceled)
		})
	}
}
