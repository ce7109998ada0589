//go:build unix

package safefile_test

import (
	"path/filepath"
	"syscall"
	"testing"

	"github.com/provision-matrix/provision/internal/safefile"
)

// Not parallel: the umask belongs to the whole process, so this must run
// while no other test creates files.
func TestModeIgnoresUmask(t *testing.T) {
	for _, umask := range []int{0, 0o022, 0o277, 0o777} {
		path := filepath.Join(t.TempDir(), "secret")
		old := syscall.Umask(umask)
		err := safefile.WriteFile(path, []byte("x"), false)
		syscall.Umask(old)
		if err != nil {
			t.Fatalf("umask %03o: %v", umask, err)
		}
		checkMode(t, path)
	}
}
