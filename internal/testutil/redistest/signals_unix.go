//go:build unix

package redistest

import "syscall"

// The signals Pause and Resume send.
const sigStop, sigCont = syscall.SIGSTOP, syscall.SIGCONT
