//go:build linux

package main

import "syscall"

// sysProcAttr puts redis-server in its own process group and has the kernel
// SIGKILL it should this command die without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
