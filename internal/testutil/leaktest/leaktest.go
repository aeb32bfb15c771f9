// Package leaktest checks that tests leave no goroutine running, as
// goleak does, with time for the goroutines still on their way out.
package leaktest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// patience bounds the wait for goroutines to end. goleak's own retries
// give them about 0.4 s of wall clock, which a loaded machine can outlast
// with goroutines that are ending (a closed connection's read loop, a
// server's handler after Close): a stall was then reported as a leak. A
// leak is still there after patience; a goroutine winding down is gone
// long before it, however loaded the machine.
const patience = 30 * time.Second

// VerifyNone fails t if goroutines other than those opts ignore still
// run once patience has passed (it returns as soon as none do).
func VerifyNone(t testing.TB, opts ...goleak.Option) {
	t.Helper()
	if err := find(opts...); err != nil {
		t.Errorf("found unexpected goroutines:\n%v", err)
	}
}

// VerifyTestMain runs m's tests, then, if they passed, checks as
// VerifyNone does that they left no goroutine running, and exits.
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	code := m.Run()
	if code == 0 {
		if err := find(opts...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: Errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// find is goleak.Find, asked again until it finds nothing or patience
// has passed.
// AfterRun is VerifyTestMain's check for a TestMain that exits itself
// (datadir.Main): given the tests' exit code, it returns 1 if they passed
// and goroutines outlive them (printed), the code as it was otherwise.
func AfterRun(opts ...goleak.Option) func(code int) int {
	return func(code int) int {
		if code == 0 {
			if err := find(opts...); err != nil {
				fmt.Fprintf(os.Stderr, "goleak: Errors on successful test run: %v\n", err)
				return 1
			}
		}
		return code
	}
}

func find(opts ...goleak.Option) error {
	deadline := time.Now().Add(patience)
	for {
		err := goleak.Find(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
