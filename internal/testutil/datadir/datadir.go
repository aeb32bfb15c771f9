// Package datadir keeps a test binary out of the user's data directory.
package datadir

import (
	"os"
	"testing"
)

// Main runs m with XDG_DATA_HOME pointed at a fresh temporary directory,
// removed afterwards, and exits with m's code: call it from TestMain in a
// package whose tests build gateways. config.DefaultDataDir (where the
// embedded queue and the forecast snapshot go when the config names no
// directory) reads XDG_DATA_HOME first, and child processes (gateways
// started as a binary) inherit it, so no test writes into the real
// ~/.local/share/sluice, whatever config it builds.
//
// The gateways of one test process share that directory, and the embedded
// queue's lock on it (jetstream.lock) lets one at a time own it: a test
// that runs two gateways with the queue at once, or runs in parallel with
// another that does, gives each its own queue.data_dir (t.TempDir()).
//
// after, if given, runs once the tests have, with their exit code, and
// returns the code to exit with (leaktest.AfterRun's goroutine check).
func Main(m *testing.M, after ...func(code int) int) {
	dir, err := os.MkdirTemp("", "sluice-test-data-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_DATA_HOME", dir)
	code := m.Run()
	for _, f := range after {
		code = f(code)
	}
	os.RemoveAll(dir)
	os.Exit(code)
}
