//go:build unix

package app

import (
	"errors"
	"os"
	"syscall"
)

// lockExclusive takes f's exclusive advisory lock without waiting. flock
// locks belong to the open file, so two Apps in one process exclude each
// other too, and the kernel drops the lock when the process dies: no stale
// lock after a crash.
func lockExclusive(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return &lockHeldError{}
	}
	return err
}
