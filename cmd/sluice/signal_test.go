package main

import (
	"os"
	"syscall"
	"testing"
)

// The first signal starts the shutdown (main's context); the second cuts
// its drain. Before, serve had no such wiring: a second SIGTERM was
// swallowed and the drain ran its whole shutdown_grace.
func TestSecondSignalCutsTheDrain(t *testing.T) {
	sig := make(chan os.Signal, 2)
	done := make(chan struct{})
	cut := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		cutOnSecondSignal(sig, done, func() { close(cut) })
	}()
	sig <- syscall.SIGTERM
	sig <- os.Interrupt
	<-cut
	<-ended

	// One signal alone does not cut; Run's end stops the watch.
	sig2 := make(chan os.Signal, 2)
	done2 := make(chan struct{})
	ended2 := make(chan struct{})
	go func() {
		defer close(ended2)
		cutOnSecondSignal(sig2, done2, func() { t.Error("cut after one signal") })
	}()
	sig2 <- syscall.SIGTERM
	close(done2)
	<-ended2
}
