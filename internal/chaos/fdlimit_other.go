//go:build !unix

package chaos

// raiseFDLimit: no soft fd limit to lift here (Windows has no RLIMIT_NOFILE).
func raiseFDLimit() {}
