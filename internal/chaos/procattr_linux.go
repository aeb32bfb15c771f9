package chaos

import "syscall"

// childAttr makes a child die with the harness (no orphaned gateways or
// servers if the harness is killed).
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
