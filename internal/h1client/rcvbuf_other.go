//go:build !linux

package h1client

import "syscall"

// receiveBuffer leaves the buffer as the system sizes it where
// Options.ReceiveBuffer is not applied (its doubling and autotuning are
// Linux's).
func receiveBuffer(int) func(network, address string, rc syscall.RawConn) error { return nil }
