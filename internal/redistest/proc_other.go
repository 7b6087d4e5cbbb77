//go:build !unix

package redistest

import (
	"os/exec"
	"syscall"
)

// sysProcAttr has nothing to configure on non-Unix systems.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// killGroup kills cmd's process (there are no process groups to kill).
func killGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
