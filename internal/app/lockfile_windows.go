//go:build windows

package app

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// lockOffset is where the locked byte lies: far past the pid the holder
// writes at the start, because Windows byte-range locks are mandatory and a
// lock over the pid would stop the next process reading whose it is. 1 GiB,
// as SQLite's lock bytes: within what every Windows file system takes.
const lockOffset = 1 << 30

// lockExclusive takes an exclusive lock on one byte of f without waiting
// (LockFileEx). The lock belongs to the file handle, so two Apps in one
// process exclude each other too, and Windows drops it when the handle is
// closed or the process ends: no stale lock after a crash.
func lockExclusive(f *os.File) error {
	ol := windows.Overlapped{Offset: uint32(lockOffset & 0xffffffff), OffsetHigh: uint32(lockOffset >> 32)}
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return &lockHeldError{}
	}
	return err
}
