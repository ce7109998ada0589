// Package safefile writes files that hold secrets: readable by their owner
// only (0600 whatever the umask), written to a temporary file next to the
// target and renamed into place only when complete and synced, so that the
// target never holds half a file, and never replacing an existing file
// unless asked to.
package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Mode is the permission of every file this package writes, unless a caller
// names another with CreateMode for a file that holds no secret.
const Mode fs.FileMode = 0o600

// File is a secret file being written. Write to it, then Commit to put it in
// place or Abort to throw it away; deferring Abort right after Create is
// always safe. A File is not safe for concurrent use.
type File struct {
	path      string
	overwrite bool
	tmp       *os.File
	done      bool
}

// Create starts writing the file at path. Unless overwrite is set, an
// existing path is an error satisfying errors.Is(err, fs.ErrExist), checked
// both now and again at Commit.
func Create(path string, overwrite bool) (*File, error) {
	return CreateMode(path, overwrite, Mode)
}

// CreateMode is Create for a file that others must be able to read (metrics
// for a collector running as another user, say): the same atomic, synced,
// no-clobber write, with mode instead of 0600. Never use it for a secret.
func CreateMode(path string, overwrite bool, mode fs.FileMode) (*File, error) {
	if !overwrite {
		if err := checkAbsent(path); err != nil {
			return nil, err
		}
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// os.CreateTemp opens with O_CREATE|O_EXCL and mode 0600: nobody else
	// can have the file open, and it never exists with wider permissions.
	// The process ID in the name lets a later run remove what a killed one left
	// (RemoveStale).
	tmp, err := os.CreateTemp(dir, fmt.Sprintf(".%s.%d-*.tmp", base, os.Getpid()))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("create %s: directory %s does not exist; create it first: %w", path, dir, err)
		}
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	// The umask can only take bits away, and 0600 minus owner bits (umask
	// 0200, say) would leave a file its owner cannot rewrite; set the mode
	// explicitly. Widening happens only now, before anything is written.
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &File{path: path, overwrite: overwrite, tmp: tmp}, nil
}

// Name is the path the file will have once committed.
func (f *File) Name() string { return f.path }

// Write writes to the temporary file.
func (f *File) Write(p []byte) (int, error) {
	if f.done {
		return 0, fmt.Errorf("write %s: %w", f.path, fs.ErrClosed)
	}
	return f.tmp.Write(p)
}

// Commit syncs the written data to disk and puts the file in place. Without
// overwrite it refuses, with an error satisfying errors.Is(err, fs.ErrExist),
// when the target has appeared since Create. On any error the temporary file
// is removed and the target is untouched.
func (f *File) Commit() (err error) {
	if f.done {
		return fmt.Errorf("commit %s: %w", f.path, fs.ErrClosed)
	}
	f.done = true
	tmp := f.tmp.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := f.tmp.Sync(); err != nil {
		f.tmp.Close()
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := f.tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if f.overwrite {
		if err := os.Rename(tmp, f.path); err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
	} else if err := linkNoClobber(tmp, f.path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(f.path))
}

// CommitBeside is Commit for a file that must never replace another (one that may
// hold the only copy of some passwords): when the target exists, the file is put
// beside it as NAME<sep>2.EXT, NAME<sep>3.EXT, ... instead. It returns the path it
// took. Choose sep so that no other file of the same kind can be named that way.
func (f *File) CommitBeside(sep string) (string, error) {
	if f.done {
		return "", fmt.Errorf("commit %s: %w", f.path, fs.ErrClosed)
	}
	f.done = true
	tmp := f.tmp.Name()
	if err := f.tmp.Sync(); err != nil {
		f.tmp.Close()
		os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := f.tmp.Close(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", f.path, err)
	}
	for i := 1; i <= 10000; i++ {
		path := Beside(f.path, sep, i)
		err := linkNoClobber(tmp, path)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			os.Remove(tmp)
			return "", err
		}
		f.path = path
		return path, syncDir(filepath.Dir(path))
	}
	os.Remove(tmp)
	return "", fmt.Errorf("write %s: 10000 files of that name exist already", f.path)
}

// Beside is the n-th name CommitBeside tries for path: path itself for n = 1, then
// NAME<sep>n.EXT ("creds.age" → "creds-2.age" with sep "-").
func Beside(path, sep string, n int) string {
	if n <= 1 {
		return path
	}
	ext := filepath.Ext(path)
	return fmt.Sprintf("%s%s%d%s", path[:len(path)-len(ext)], sep, n, ext)
}

// RemoveStale removes the temporary files that a killed process left while it
// wrote path (or a file CommitBeside would put beside it): those whose process no
// longer runs. They hold secrets (encrypted, usually), and nothing else would ever
// remove them. It returns how many it removed.
func RemoveStale(path string) int {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ext := filepath.Ext(base)
	stem := base[:len(base)-len(ext)]
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, "."+stem) || !strings.HasSuffix(name, ".tmp") {
			continue
		}
		var pid int
		rest := strings.TrimSuffix(strings.TrimPrefix(name, "."), ".tmp")
		i := strings.LastIndexByte(rest, '.')
		if i < 0 {
			continue
		}
		if _, err := fmt.Sscanf(rest[i+1:], "%d-", &pid); err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		if os.Remove(filepath.Join(dir, name)) == nil {
			n++
		}
	}
	return n
}

// linkNoClobber puts tmp at path unless path exists. link(2) fails with
// EEXIST rather than replace anything, so there is no window between a check
// and the rename for another process to slip a file in.
func linkNoClobber(tmp, path string) error {
	err := os.Link(tmp, path)
	switch {
	case err == nil:
		// The data now has two names; drop the temporary one. If that fails
		// the committed file is still complete, so this is not an error worth
		// failing the run for, but leaving a second copy of a secret around
		// is: report it.
		if err := os.Remove(tmp); err != nil {
			return fmt.Errorf("write %s: remove temporary copy %s: %w", path, tmp, err)
		}
		return nil
	case errors.Is(err, fs.ErrExist):
		return existsError(path)
	}
	// Some file systems (FAT, some network and FUSE mounts) have no hard
	// links. Fall back to check-then-rename: a file created in the moment
	// between the two is replaced, which is the best such a file system
	// allows.
	if err := checkAbsent(path); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Abort closes and removes the temporary file, leaving the target as it was.
// It does nothing after Commit or a previous Abort.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.tmp.Close()
	os.Remove(f.tmp.Name())
}

// WriteFile writes data to path the way Create and Commit do.
func WriteFile(path string, data []byte, overwrite bool) error {
	return WriteFileMode(path, data, overwrite, Mode)
}

// WriteFileMode is WriteFile with CreateMode's mode.
func WriteFileMode(path string, data []byte, overwrite bool, mode fs.FileMode) error {
	f, err := CreateMode(path, overwrite, mode)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

func checkAbsent(path string) error {
	// Lstat, not Stat: a dangling symlink is still something in the way.
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return existsError(path)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("create %s: %w", path, err)
	}
}

func existsError(path string) error {
	return fmt.Errorf("%s already exists: %w", path, fs.ErrExist)
}

// syncDir makes the new directory entry durable: without it a crash right
// after Commit can lose the file even though its data was synced.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be opened for syncing there
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
