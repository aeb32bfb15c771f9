package app

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// errLockHeld: another open file holds the lock: another sluice process,
// or another App in this one.
var errLockHeld = errors.New("held by another sluice process")

// lockHeldError is errLockHeld with the holder's pid, as it wrote it into
// the lock file (0 when it has not yet, or the file says nothing).
type lockHeldError struct{ pid int }

func (e *lockHeldError) Error() string {
	if e.pid == 0 {
		return errLockHeld.Error()
	}
	return fmt.Sprintf("%s (pid %d)", errLockHeld, e.pid)
}

func (e *lockHeldError) Is(target error) bool { return target == errLockHeld }

// takeLock creates path if need be, takes its exclusive advisory lock
// without waiting and writes this process's pid into it, for the message
// of the next process that tries. release closes the file, which drops
// the lock; so does the process's end, however it ends: a kill -9 leaves
// no stale lock (the pid left in the file is only a name, never checked).
// Held elsewhere, the error is a *lockHeldError (errors.Is errLockHeld).
func takeLock(path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := lockExclusive(f); err != nil {
		var held *lockHeldError
		if errors.As(err, &held) {
			held.pid = holderPID(f)
		}
		f.Close()
		return nil, err
	}
	// Best effort: the pid only names the holder in a message.
	if f.Truncate(0) == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}

// holderPID is the pid the lock's holder wrote into f, 0 if none.
func holderPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
