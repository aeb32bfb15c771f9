//go:build !linux

package netguard

import "net"

// setNotSentLowat does nothing where the option is not set (MaxUnsent).
func setNotSentLowat(*net.TCPConn, int) {}
