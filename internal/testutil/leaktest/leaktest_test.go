package leaktest

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// A goroutine that ends after goleak's retries (a stall on a loaded
// machine; here it is held until they are over) is reported by
// goleak.Find; VerifyNone waits for it to end.
func TestAGoroutineEndingLateIsNoLeak(t *testing.T) {
	before := goleak.IgnoreCurrent()
	release := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		<-release
	}()
	if goleak.Find(before) == nil {
		t.Fatal("goleak did not see a goroutine still running")
	}
	// It ends while VerifyNone checks (or, on a loaded machine, before:
	// VerifyNone passes either way).
	late := time.AfterFunc(200*time.Millisecond, func() { close(release) })
	defer late.Stop()
	VerifyNone(t, before)
	<-ended
}
