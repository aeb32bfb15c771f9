package chaos

import "syscall"

// setRcvBuf shrinks a socket's receive buffer before connect, so the
// kernel cannot absorb a large answer on a slow reader's behalf.
func setRcvBuf(n int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n) })
		if err != nil {
			return err
		}
		return serr
	}
}
