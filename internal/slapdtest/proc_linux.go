package slapdtest

import "syscall"

// sysProcAttr puts slapd in its own process group, so that Stop reaches all of it
// and a Ctrl-C meant for `go test` does not stop it half-way, and has the kernel kill
// it when the test binary dies, however it dies. slapd runs without -u for this: the
// kernel clears the parent-death signal of a process that changes its user.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
