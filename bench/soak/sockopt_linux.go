//go:build linux

package main

import "syscall"

// smallReceiveBuffer makes a slow reader's socket buffer small, so that the
// gateway, not the kernel, holds what the reader has not taken yet.
func smallReceiveBuffer(n int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n) })
		if err != nil {
			return err
		}
		return serr
	}
}

// dieWithParent has the kernel SIGKILL a child when the soak dies, so a
// killed soak leaves no simulator or gateway behind.
func dieWithParent() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
