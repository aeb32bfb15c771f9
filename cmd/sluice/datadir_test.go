package main

import (
	"testing"

	"github.com/sluice-gw/sluice/internal/testutil/datadir"
	"github.com/sluice-gw/sluice/internal/testutil/leaktest"
)

// TestMain keeps this package's gateways out of the user's data directory
// (the forecast snapshot and the embedded queue default to it), and
// fails a passing run that leaves goroutines behind (leaktest: waited for
// up to 30 s, so goroutines still ending after their test are not
// counted). Before, the commands' tests (serve, worker, chaos, bench,
// quickstart, demo) had no such check.
func TestMain(m *testing.M) { datadir.Main(m, leaktest.AfterRun()) }
