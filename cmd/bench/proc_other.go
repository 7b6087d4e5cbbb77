//go:build !unix

package main

import (
	"os/exec"
	"syscall"
	"time"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func killProcess(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

// processCPU is not measured on this platform.
func processCPU() time.Duration { return 0 }

func loadAverage() string { return "" }
