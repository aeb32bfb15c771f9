//go:build !unix

package app

import "os"

// lockExclusive: no advisory lock here; saves are still atomic renames, so
// two gateways sharing a snapshot file overwrite, but never corrupt, it.
func lockExclusive(*os.File) error { return nil }
