//go:build unix && !linux

package redistest

import "syscall"

// sysProcAttr puts redis-server into its own process group so that cleanup
// can kill the whole group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
