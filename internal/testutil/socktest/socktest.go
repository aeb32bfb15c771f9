//go:build unix

// Package socktest measures what a kernel holds for a socket whose peer
// reads nothing: the tests of the send and receive bounds (netguard's
// unsent bytes, h1client's receive buffer) write until it takes no more.
package socktest

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

// FillUntilFull writes to c without blocking, 64 KiB at a time, until the
// kernel takes no more (EAGAIN) or limit bytes are taken, and returns how
// many it took: with a peer that reads nothing, what the kernel queues
// for it (c's send queue and the peer's receive queue). Nothing waits on
// time: the write stops at the first refusal.
func FillUntilFull(t *testing.T, c *net.TCPConn, limit int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	var took int
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		for took < limit {
			n, err := syscall.Write(int(fd), buf)
			if err != nil {
				if !errors.Is(err, syscall.EAGAIN) {
					werr = err
				}
				return true
			}
			took += n
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatal(werr)
	}
	return took
}
