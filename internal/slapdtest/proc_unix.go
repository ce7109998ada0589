//go:build unix

package slapdtest

import (
	"errors"
	"syscall"
)

// signalGroup signals the process group that pid leads. A group that is already
// gone is not an error: the process exited on its own.
func signalGroup(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
