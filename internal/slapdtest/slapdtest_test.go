package slapdtest

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

// Stop must leave no process and no directory behind: that is the package's promise.
func TestStartStop(t *testing.T) {
	s := Start(t, 3)
	pid := s.PID()
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("slapd (pid %d) is not running after Start: %v", pid, err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("slapd (pid %d) still exists after Stop: kill -0 = %v", pid, err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Stop", s.Dir)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}
