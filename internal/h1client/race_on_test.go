//go:build race

package h1client

// raceBuild: the race detector changes what escapes, so allocation counts
// are asserted only without it.
const raceBuild = true
