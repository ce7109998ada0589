package journal

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The library says what failed and leaves the advice to the command, which knows its
// flags: no error names a flag, and each can be told apart with errors.Is or As.
func TestErrorsNameNoFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "journal")
	must(t, open(t, path, Options{}).Close())
	raw, err := os.ReadFile(path)
	must(t, err)

	damaged := filepath.Join(dir, "damaged")
	b := append([]byte(nil), raw...)
	b = append(b, make([]byte, 8)...) // a record length of zero with a wrong checksum
	b[len(b)-1] = 1
	b = append(b, []byte("more bytes after the damage")...)
	must(t, os.WriteFile(damaged, b, 0o600))

	newer := filepath.Join(dir, "newer")
	h := append([]byte(nil), raw...)
	h[len(magic)] = 99
	binary.BigEndian.PutUint32(h[prefixLen-4:], crc32.Checksum(h[:prefixLen-4], castagnoli))
	must(t, os.WriteFile(newer, h, 0o600))

	notJournal := filepath.Join(dir, "roster.csv")
	must(t, os.WriteFile(notJournal, []byte("localpart\nalice\n"), 0o600))

	held := open(t, filepath.Join(dir, "held"), Options{})
	_ = held

	for _, c := range []struct {
		name string
		err  func() error
		is   error
	}{
		{"wrong key", func() error { _, err := Open(path, DeriveKey([]byte("x")), Options{Homeserver: hs}); return err }, ErrWrongKey},
		{"other homeserver", func() error { _, err := Open(path, testKey, Options{Homeserver: "https://b.example"}); return err }, ErrOtherHomeserver},
		{"locked", func() error { _, err := Open(filepath.Join(dir, "held"), testKey, Options{Homeserver: hs}); return err }, ErrLocked},
		{"fresh, locked", func() error {
			_, err := Open(filepath.Join(dir, "held"), testKey, Options{Homeserver: hs, Fresh: true})
			return err
		}, ErrLocked},
		{"not a journal", func() error { _, err := Open(notJournal, testKey, Options{Homeserver: hs}); return err }, ErrNotJournal},
		{"newer format", func() error { _, err := Open(newer, testKey, Options{Homeserver: hs}); return err }, ErrUnsupportedVersion},
		{"damaged", func() error { _, err := Open(damaged, testKey, Options{Homeserver: hs}); return err }, nil},
		{"directory", func() error { _, err := Open(dir, testKey, Options{Homeserver: hs}); return err }, nil},
	} {
		err := c.err()
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if strings.Contains(err.Error(), "--") {
			t.Errorf("%s: %q gives the command's advice", c.name, err)
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: %v is not %v", c.name, err, c.is)
		}
		if c.name == "damaged" {
			if _, ok := errors.AsType[*CorruptError](err); !ok {
				t.Errorf("damaged: %v is not a *CorruptError", err)
			}
		}
	}
}
