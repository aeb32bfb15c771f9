//go:build !linux

package proxy

import (
	"net"
	"syscall"
)

// receiveBufferBefore leaves the buffer as the system sizes it where the
// bound is not applied (its doubling and autotuning are Linux's).
func receiveBufferBefore(int) func(network, address string, rc syscall.RawConn) error { return nil }

// boundReceiveBuffer does nothing where the bound is not applied.
func boundReceiveBuffer(net.Conn, int) {}
