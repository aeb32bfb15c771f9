//go:build unix

package chaos

import "syscall"

// raiseFDLimit lifts the soft fd limit to the hard one: a connection flood
// needs thousands of sockets on both ends. The child gateway inherits it.
func raiseFDLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
