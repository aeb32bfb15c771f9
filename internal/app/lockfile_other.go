//go:build !unix && !windows

package app

import "os"

// lockExclusive: no advisory lock here (Plan 9, WebAssembly). Forecast
// snapshots are still saved by atomic renames, so two gateways sharing one
// overwrite, but never corrupt, it; the embedded queue's store has no such
// guard.
func lockExclusive(*os.File) error { return nil }
