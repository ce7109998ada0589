//go:build !unix

package dendritetest

import (
	"errors"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func listens(pid, port int) (bool, error) { return true, nil }

func signalGroup(pid int, sig syscall.Signal) error {
	return errors.New("dendritetest needs a unix system")
}
