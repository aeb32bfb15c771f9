//go:build !unix

package main

import "time"

// ownCPU: no getrusage here; the report says 0 for this process's CPU.
func ownCPU() time.Duration { return 0 }
