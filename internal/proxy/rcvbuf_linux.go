package proxy

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// receiveBufferBefore is a net.Dialer Control hook that sets SO_RCVBUF to
// n before the connection is made, so the window scale the SYN offers
// fits the fixed buffer. TCP_WINDOW_CLAMP was not taken: autotuning
// rewrites the clamp whenever it grows the buffer (tcp_rcv_space_adjust,
// "make the window clamp follow along"), so a connection read fast once
// and then left unread could queue up to tcp_rmem's maximum all the same
// (docs/RELIABILITY.md). A refused option leaves the kernel's default:
// the connection is still usable.
func receiveBufferBefore(n int) func(network, address string, rc syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n) })
		return nil
	}
}

// boundReceiveBuffer sets SO_RCVBUF to n on a connection already made (a
// TLS one, once ALPN has said it carries HTTP/1.1). The window scale was
// offered for tcp_rmem's maximum; the buffer still bounds the window, in
// coarser steps. Nothing has been read from the backend but the
// handshake, so the buffer has not grown past tcp_rmem's default yet.
func boundReceiveBuffer(c net.Conn, n int) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	if rc, err := sc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n) })
	}
}
