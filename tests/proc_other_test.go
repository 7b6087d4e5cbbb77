//go:build !linux

package tests

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
