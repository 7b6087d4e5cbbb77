//go:build unix

package main

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// killProcess SIGKILLs the process group led by cmd (redis-server runs in
// its own group, see sysProcAttr).
func killProcess(cmd *exec.Cmd) {
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		_ = cmd.Process.Kill()
	}
}

// processCPU returns the CPU time (user + system) this process has used:
// the load generator and the servers under test together.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadAverage returns the 1-minute load average from /proc/loadavg, or "" where
// there is none: other work on the machine skews absolute numbers.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
