package netguard

import (
	"net"

	"golang.org/x/sys/unix"
)

// setReceiveBuffer sets SO_RCVBUF on c: Linux keeps twice n (at most twice
// net.core.rmem_max) and stops autotuning the buffer.
func setReceiveBuffer(c *net.TCPConn, n int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n) })
}
