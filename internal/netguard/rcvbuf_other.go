//go:build !linux

package netguard

import "net"

// setReceiveBuffer does nothing where the bound is not applied (its
// doubling and autotuning are Linux's).
func setReceiveBuffer(*net.TCPConn, int) {}
