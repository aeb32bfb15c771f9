package demo

import (
	"testing"

	"github.com/sluice-gw/sluice/internal/testutil/datadir"
)

// TestMain keeps this package's gateways out of the user's data directory
// (the forecast snapshot and the embedded queue default to it).
func TestMain(m *testing.M) { datadir.Main(m) }
