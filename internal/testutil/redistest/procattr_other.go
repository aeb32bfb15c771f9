//go:build !linux

package redistest

import "syscall"

// procAttr: only Linux can tie the child's life to ours; elsewhere
// t.Cleanup is the only stop.
func procAttr() *syscall.SysProcAttr { return nil }
