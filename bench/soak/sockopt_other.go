//go:build !linux

package main

import "syscall"

// smallReceiveBuffer is a no-op off Linux: the slow readers then read
// slowly through the kernel's default buffer.
func smallReceiveBuffer(int) func(network, address string, c syscall.RawConn) error {
	return nil
}

func dieWithParent() *syscall.SysProcAttr { return nil }
