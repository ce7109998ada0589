package roster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func collect(t *testing.T, s *Source, opts Options) ([]string, error) {
	t.Helper()
	var got []string
	err := s.Each(opts, func(u User) error { got = append(got, u.Localpart); return nil })
	return got, err
}

// What is sent is what was checked: a roster changed after the check (a row added,
// one edited to make someone an admin) stops the run before its first user, and one
// replaced by a rename (how editors and export jobs save) is read as it was checked.
func TestSourceRefusesAChangedRoster(t *testing.T) {
	t.Parallel()
	opts := Options{Format: FormatCSV}
	dir := t.TempDir()

	t.Run("appended", func(t *testing.T) {
		path := filepath.Join(dir, "a.csv")
		os.WriteFile(path, []byte("localpart,admin\nalice,false\n"), 0o600)
		s, err := OpenSource(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Check(opts); err != nil {
			t.Fatal(err)
		}
		f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("mallory,true\n")
		f.Close()
		got, err := collect(t, s, opts)
		if !errors.Is(err, ErrChanged) || len(got) != 0 {
			t.Errorf("Each = %v, %v; want ErrChanged before any user", got, err)
		}
	})
	t.Run("edited in place, same size", func(t *testing.T) {
		path := filepath.Join(dir, "b.csv")
		os.WriteFile(path, []byte("localpart,admin\nalice,false\n"), 0o600)
		s, _ := OpenSource(path, nil)
		defer s.Close()
		if _, err := s.Check(opts); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(path, []byte("localpart,admin\nmallory,yes\n"), 0o600)
		// Keep the size and the time: only the content tells.
		old := time.Now().Add(-time.Hour)
		os.Chtimes(path, old, old)
		s.mtime = old
		if _, err := collect(t, s, opts); !errors.Is(err, ErrChanged) {
			t.Errorf("Each = %v, want ErrChanged", err)
		}
	})
	t.Run("replaced by a rename", func(t *testing.T) {
		path := filepath.Join(dir, "c.csv")
		os.WriteFile(path, []byte("localpart\nalice\n"), 0o600)
		s, _ := OpenSource(path, nil)
		defer s.Close()
		if _, err := s.Check(opts); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(path+".new", []byte("localpart\nalice\nmallory\n"), 0o600)
		os.Rename(path+".new", path)
		got, err := collect(t, s, opts)
		if err != nil || strings.Join(got, ",") != "alice" {
			t.Errorf("Each = %v, %v; want the checked roster (alice)", got, err)
		}
	})
}

// A roster that cannot be read twice (standard input, a FIFO, <(cmd)) is read once
// and held in memory: the second pass sees every user, not an empty stream.
func TestSourceSpoolsAFIFO(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err == nil {
			f.WriteString("localpart\nalice\nbob\n")
			f.Close()
		}
	}()
	s, err := OpenSource(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	opts := Options{Format: FormatCSV}
	if st, err := s.Check(opts); err != nil || st.Users != 2 {
		t.Fatalf("Check = %+v, %v", st, err)
	}
	got, err := collect(t, s, opts)
	if err != nil || strings.Join(got, ",") != "alice,bob" || !s.Spooled() {
		t.Errorf("second pass = %v, %v (spooled %v); want alice,bob from memory", got, err, s.Spooled())
	}
}

// Standard input over the cap is refused rather than held without bound.
func TestSourceCapsStandardInput(t *testing.T) {
	t.Parallel()
	_, err := spool("-", &zeros{n: 2<<20 + 1}, 2<<20)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("OpenSource over the cap = %v, want ErrTooLarge", err)
	}
}

type zeros struct{ n int }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, os.ErrClosed
	}
	n := min(len(p), z.n)
	clear(p[:n])
	z.n -= n
	return n, nil
}
