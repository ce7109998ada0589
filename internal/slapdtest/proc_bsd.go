//go:build unix && !linux

package slapdtest

import "syscall"

// sysProcAttr puts slapd in its own process group. There is no parent-death signal
// outside Linux: a killed test binary can leave a server running here.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
