//go:build !unix

package redistest

import "syscall"

// Without SIGSTOP (Windows), Pause and Resume send signals the process
// refuses (os.Process.Signal only kills there): the server keeps answering,
// and a test that needs it paused fails on what it sees.
const sigStop, sigCont = syscall.Signal(0x13), syscall.Signal(0x12)
