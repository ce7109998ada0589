package safefile_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/provision-matrix/provision/internal/safefile"
)

// names lists dir, so tests can see that nothing is left behind.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkMode(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 {
		t.Errorf("%s has mode %v, want -rw-------", path, fi.Mode())
	}
}

func TestCreateCommit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "credentials.age")
	f, err := safefile.Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if _, err := f.Write([]byte("half")); err != nil {
		t.Fatal(err)
	}
	// Before Commit the target does not exist, not even half written.
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("target exists before Commit: %v", err)
	}
	if _, err := f.Write([]byte(" and half")); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != "half and half" {
		t.Errorf("committed %q", got)
	}
	checkMode(t, path)
	if got := names(t, dir); !slices.Equal(got, []string{"credentials.age"}) {
		t.Errorf("directory holds %q after Commit, want only the file", got)
	}
	f.Abort() // after Commit: must not remove the committed file
	if got := readFile(t, path); got != "half and half" {
		t.Errorf("Abort after Commit changed the file to %q", got)
	}
	if _, err := f.Write([]byte("more")); err == nil {
		t.Error("Write after Commit succeeded")
	}
	if err := f.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
}

func TestNoClobber(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "report.csv")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := safefile.Create(path, false)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create over an existing file = %v, want fs.ErrExist", err)
	}
	// The library names the file; the advice (which flag) is the CLI's (issue 12).
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q should name the file", err)
	}
	if got := readFile(t, path); got != "old" {
		t.Errorf("existing file changed to %q", got)
	}

	// A dangling symlink is something in the way too.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), link); err != nil {
		t.Fatal(err)
	}
	if _, err := safefile.Create(link, false); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create over a dangling symlink = %v, want fs.ErrExist", err)
	}
}

func TestNoClobberAtCommit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	f, err := safefile.Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if _, err := f.Write([]byte("ours")); err != nil {
		t.Fatal(err)
	}
	// Someone else creates the target while we write.
	if err := os.WriteFile(path, []byte("theirs"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Commit over a file that appeared = %v, want fs.ErrExist", err)
	}
	if got := readFile(t, path); got != "theirs" {
		t.Errorf("the other file changed to %q", got)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"out"}) {
		t.Errorf("directory holds %q after a refused Commit, want no temporary file", got)
	}
}

func TestOverwrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	if err := os.WriteFile(path, []byte("old content"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := safefile.Create(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if _, err := f.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != "old content" {
		t.Errorf("target is %q before Commit, want the old content", got)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != "new" {
		t.Errorf("target is %q after Commit", got)
	}
	checkMode(t, path) // the old file's 0644 does not carry over
}

func TestAbort(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, overwrite := range []bool{false, true} {
		target := path
		if !overwrite {
			target = filepath.Join(dir, "fresh")
		}
		f, err := safefile.Create(target, overwrite)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("secret")); err != nil {
			t.Fatal(err)
		}
		f.Abort()
		f.Abort() // twice is fine
		if err := f.Commit(); err == nil {
			t.Error("Commit after Abort succeeded")
		}
	}
	if got := names(t, dir); !slices.Equal(got, []string{"out"}) {
		t.Errorf("directory holds %q after Abort, want only the old file", got)
	}
	if got := readFile(t, path); got != "old" {
		t.Errorf("Abort changed the existing file to %q", got)
	}
}

func TestWriteFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := safefile.WriteFile(path, []byte("one"), false); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)
	if err := safefile.WriteFile(path, []byte("two"), false); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second WriteFile = %v, want fs.ErrExist", err)
	}
	if err := safefile.WriteFile(path, []byte("three"), true); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != "three" {
		t.Errorf("file holds %q", got)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"key"}) {
		t.Errorf("directory holds %q", got)
	}
}

func TestMissingDirectory(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "out")
	_, err := safefile.Create(path, false)
	if err == nil || !strings.Contains(err.Error(), "create it first") {
		t.Errorf("Create in a missing directory = %v, want a hint to create it", err)
	}
}

func TestRelativePath(t *testing.T) {
	// Not parallel: changes the working directory.
	t.Chdir(t.TempDir())
	if err := safefile.WriteFile("plain", []byte("x"), false); err != nil {
		t.Fatal(err)
	}
	checkMode(t, "plain")
}

func TestWriteFileModeForPublicFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "provision.prom")
	if err := safefile.WriteFileMode(path, []byte("a 1\n"), true, 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want -rw-r--r-- for a file a collector must read", fi.Mode())
	}
	if err := safefile.WriteFileMode(path, []byte("a 2\n"), false, 0o644); !errors.Is(err, fs.ErrExist) {
		t.Errorf("without overwrite: err = %v, want fs.ErrExist", err)
	}
}

// A file that may hold the only copy of some passwords is never replaced: the new one
// goes beside it, and the name it took is returned.
func TestCommitBesideNeverReplaces(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "creds.age")
	if err := os.WriteFile(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "creds-2.age"), []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := safefile.Create(path, true)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("third"))
	got, err := f.CommitBeside("-")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "creds-3.age"); got != want {
		t.Errorf("committed to %s, want %s", got, want)
	}
	for name, want := range map[string]string{"creds.age": "first", "creds-2.age": "second", "creds-3.age": "third"} {
		if b := readFile(t, filepath.Join(dir, name)); b != want {
			t.Errorf("%s holds %q, want %q", name, b, want)
		}
	}
}

// A killed run's temporary file is removed by the next; a running one's is not.
func TestRemoveStale(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "creds.age")
	dead := filepath.Join(dir, ".creds.age.999999999-123.tmp")
	live, err := safefile.Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Abort()
	if err := os.WriteFile(dead, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := safefile.RemoveStale(path); n != 1 {
		t.Errorf("removed %d files, want 1", n)
	}
	if _, err := os.Stat(dead); !errors.Is(err, fs.ErrNotExist) {
		t.Error("the dead process's temporary file is still there")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the live run's temporary file was removed: %v", entries)
	}
}

// Two outputs that are one file are refused before anything is written: the same
// path spelt two ways, a symbolic link, a hard link.
func TestCheckDistinct(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	creds := filepath.Join(dir, "c.age")
	if err := os.WriteFile(creds, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(creds, filepath.Join(dir, "link.csv")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(creds, filepath.Join(dir, "hard.csv")); err != nil {
		t.Fatal(err)
	}
	for _, other := range []string{creds, filepath.Join(dir, ".", "x", "..", "c.age"), filepath.Join(dir, "link.csv"), filepath.Join(dir, "hard.csv")} {
		err := safefile.CheckDistinct(safefile.Output{Flag: "--credentials", Path: creds}, safefile.Output{Flag: "--report", Path: other})
		if err == nil || !strings.Contains(err.Error(), "--credentials") || !strings.Contains(err.Error(), "--report") {
			t.Errorf("report %s: err = %v, want both flags named", other, err)
		}
	}
	if err := safefile.CheckDistinct(safefile.Output{Flag: "--credentials", Path: creds}, safefile.Output{Flag: "--report", Path: "-"},
		safefile.Output{Flag: "--metrics-file", Path: filepath.Join(dir, "m.prom")}); err != nil {
		t.Errorf("distinct outputs refused: %v", err)
	}
}
