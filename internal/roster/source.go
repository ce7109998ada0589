package roster

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"time"
)

// MaxSpool bounds a roster that cannot be read twice (standard input, a FIFO, a
// process substitution such as <(ldapsearch ...)): it is held in memory between the
// check and the run. A larger roster belongs in a file.
const MaxSpool = 512 << 20

// ErrChanged is a roster file that changed between the check and a later pass: what
// would be sent is not what was checked.
var ErrChanged = errors.New("the roster changed after it was checked")

// ErrTooLarge is a roster that cannot be read twice and is larger than MaxSpool.
var ErrTooLarge = errors.New("the roster is too large to hold in memory")

// Source is a roster that a run reads more than once: Check reads all of it and
// reports every problem; Each streams it again, and refuses to go on if it is no
// longer what Check read. A regular file is read through the one file descriptor
// opened at the start, so an editor that saves by renaming a new file into place
// cannot slip a different roster under the run; a file changed in place is found by
// its size, modification time and SHA-256. Anything else (standard input, a FIFO) is
// read once, into memory, within MaxSpool: it is never written to disk, since a
// roster may hold passwords.
type Source struct {
	name string
	f    *os.File // a regular file
	data []byte   // or the spooled input

	checked bool
	size    int64
	mtime   time.Time
	sum     [sha256.Size]byte
}

// OpenSource opens the roster at path ("-" is stdin).
func OpenSource(path string, stdin io.Reader) (*Source, error) {
	if path == "-" {
		return spool("-", stdin, MaxSpool)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	switch {
	case st.IsDir():
		f.Close()
		return nil, fmt.Errorf("%s is a directory", path)
	case !st.Mode().IsRegular():
		defer f.Close()
		return spool(path, f, MaxSpool)
	}
	return &Source{name: path, f: f}, nil
}

func spool(name string, r io.Reader, limit int64) (*Source, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading the roster %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s is larger than %d MiB and cannot be read twice", ErrTooLarge, name, limit>>20)
	}
	return &Source{name: name, data: b}, nil
}

// Name is the roster's name in messages ("-" for standard input).
func (s *Source) Name() string { return s.name }

// Spooled reports whether the roster was read into memory (it could not be read twice).
func (s *Source) Spooled() bool { return s.f == nil }

// Check reads the whole roster and reports every problem in it (see the package
// function Check). The first call records what the roster is; later passes must find
// the same.
func (s *Source) Check(opts Options) (Stats, error) {
	r, h, err := s.reader()
	if err != nil {
		return Stats{}, err
	}
	st, err := Check(r, s.name, opts)
	if err != nil {
		return st, err
	}
	if _, err := io.Copy(io.Discard, r); err != nil { // the hash covers the whole file
		return st, err
	}
	if err := s.settle(h, !s.checked); err != nil {
		return st, err
	}
	s.checked = true
	return st, nil
}

// Each streams the roster's users in file order (see the package function Each). It
// fails with ErrChanged, before fn sees a user, when the file's size or modification
// time differ from what Check read, and, after the last user, when its content did.
func (s *Source) Each(opts Options, fn func(User) error) error {
	if err := s.unchanged(); err != nil {
		return err
	}
	r, h, err := s.reader()
	if err != nil {
		return err
	}
	if err := Each(r, s.name, opts, fn); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	return s.settle(h, false)
}

// Close releases the file.
func (s *Source) Close() error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

func (s *Source) reader() (io.Reader, hash.Hash, error) {
	h := sha256.New()
	if s.f == nil {
		return io.TeeReader(bytes.NewReader(s.data), h), h, nil
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, nil, fmt.Errorf("reading the roster %s again: %w", s.name, err)
	}
	return io.TeeReader(s.f, h), h, nil
}

// settle records the content's hash (first) or compares it with the recorded one.
func (s *Source) settle(h hash.Hash, first bool) error {
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	if first {
		s.sum = sum
		if s.f != nil {
			st, err := s.f.Stat()
			if err != nil {
				return err
			}
			s.size, s.mtime = st.Size(), st.ModTime()
		}
		return nil
	}
	if sum != s.sum {
		return fmt.Errorf("%w: %s was modified while provision read it", ErrChanged, s.name)
	}
	return nil
}

func (s *Source) unchanged() error {
	if s.f == nil || !s.checked {
		return nil
	}
	st, err := s.f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != s.size || !st.ModTime().Equal(s.mtime) {
		return fmt.Errorf("%w: %s was modified since the check (size or time differ)", ErrChanged, s.name)
	}
	return nil
}
