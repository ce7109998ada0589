//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package pipeline

import (
	"errors"
	"os"
	"syscall"
)

// journalBusy reports whether a provision run holds the journal at path. It takes a
// shared lock for an instant: the journal's own lock is exclusive (flock), so a
// running apply makes it fail, while two plans never get in each other's way.
func journalBusy(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close() // also releases the shared lock
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		switch {
		case err == nil:
			return false, nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return true, nil
		}
		return false, err
	}
}
