//go:build !unix

package slapdtest

import (
	"errors"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(pid int, sig syscall.Signal) error {
	return errors.New("slapdtest needs a unix system")
}
