//go:build unix

package redistest

import (
	"os/exec"
	"syscall"
)

// killGroup SIGKILLs the process group led by cmd's process.
func killGroup(cmd *exec.Cmd) {
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		_ = cmd.Process.Kill()
	}
}
