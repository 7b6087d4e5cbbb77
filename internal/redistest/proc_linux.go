//go:build linux

package redistest

import "syscall"

// sysProcAttr puts redis-server into its own process group (so cleanup can
// kill the whole group) and asks the kernel to SIGKILL it should the test
// binary die without running its cleanups (e.g. on a go test -timeout
// panic), so no orphaned servers are left behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
