//go:build linux

package tests

import "syscall"

// sysProcAttr asks the kernel to SIGKILL a server should the test binary die
// without running its cleanups, so that no server outlives the tests.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
