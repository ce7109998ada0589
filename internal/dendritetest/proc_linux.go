package dendritetest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// sysProcAttr puts Dendrite in its own process group, so that Stop reaches all of it
// and a Ctrl-C meant for `go test` does not stop it half-way, and has the kernel kill
// it when the test binary dies, however it dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// listens reports whether process pid holds the socket listening on TCP port: the
// inode of the listener in /proc/net/tcp{,6} is one of pid's file descriptors.
func listens(pid, port int) (bool, error) {
	inodes := map[string]bool{}
	suffix := fmt.Sprintf(":%04X", port)
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue // no IPv6, or no /proc: decided below
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) >= 10 && fields[3] == "0A" && strings.HasSuffix(fields[1], suffix) {
				inodes["socket:["+fields[9]+"]"] = true
			}
		}
		f.Close()
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil || len(inodes) == 0 {
		// Something answered on the port, so a listener exists: if /proc does not show
		// it, we cannot tell whose it is, and the pid being alive is what we have.
		return true, nil
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err == nil && inodes[target] {
			return true, nil
		}
	}
	return false, nil
}
