package chaos

import (
	"os"
	"testing"

	"github.com/sluice-gw/sluice/internal/testutil/datadir"
)

// TestMain keeps this package's gateways out of the user's data directory
// (the forecast snapshot and the embedded queue default to it). Started as
// `serve --config FILE`, the test binary is the leak target's stand-in
// gateway instead (fakegateway_test.go).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		os.Exit(fakeGateway(os.Args[2:]))
	}
	datadir.Main(m)
}
