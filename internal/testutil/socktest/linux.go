//go:build linux

package socktest

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Int reads one integer of c's socket (a *net.TCPConn): an option or an
// ioctl, as get reads it (RcvBuf, InQ).
func Int(t *testing.T, c net.Conn, get func(fd int) (int, error)) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = get(int(fd)) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// RcvBuf is the socket's SO_RCVBUF, what the kernel holds for it.
func RcvBuf(fd int) (int, error) { return unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF) }

// InQ is how many bytes the socket's receive queue holds unread.
func InQ(fd int) (int, error) { return unix.IoctlGetInt(fd, unix.SIOCINQ) }

// HeldReceiveBuffer is what the kernel holds for SO_RCVBUF n: twice n,
// n capped by net.core.rmem_max.
func HeldReceiveBuffer(t *testing.T, n int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Fatal(err)
	}
	max, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return 2 * min(n, max)
}
