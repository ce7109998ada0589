package dendritetest

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// listens must tell our own listener from another process's, or a server that grabbed
// Dendrite's port would pass for Dendrite.
func TestListens(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	if ok, err := listens(os.Getpid(), port); err != nil || !ok {
		t.Errorf("listens(self, %d) = %v, %v; want true", port, ok, err)
	}

	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	if ok, err := listens(other.Process.Pid, port); err != nil || ok {
		t.Errorf("listens(another process, %d) = %v, %v; want false", port, ok, err)
	}
}
