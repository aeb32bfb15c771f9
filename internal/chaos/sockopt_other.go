//go:build !linux

package chaos

import "syscall"

func setRcvBuf(int) func(network, address string, c syscall.RawConn) error { return nil }
