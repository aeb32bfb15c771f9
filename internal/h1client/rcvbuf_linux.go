package h1client

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// receiveBuffer is a net.Dialer Control hook that sets SO_RCVBUF to n
// before the connection is made, so the window scale the SYN offers fits
// the fixed buffer. TCP_WINDOW_CLAMP was not taken: autotuning rewrites
// the clamp whenever it grows the buffer (tcp_rcv_space_adjust, "make
// the window clamp follow along"), so a connection read fast once and
// then left unread could queue up to tcp_rmem's maximum all the same
// (docs/RELIABILITY.md). A refused option leaves the kernel's
// default: the connection is still usable.
func receiveBuffer(n int) func(network, address string, rc syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n) })
		return nil
	}
}
