package directory

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// spool keeps the validated people of one search in a temporary file, so
// that a roster of any size costs no memory and the run reads exactly what
// was validated. The file is created 0600 and unlinked at once where the
// system allows it, so that nothing is left behind however the program
// ends; elsewhere Close removes it.
type spool struct {
	f        *os.File
	w        *bufio.Writer
	n        int
	path     string // "" once unlinked
	buf      []byte
	lookups  int
	writeErr error
}

// maxLookups bounds the scans of the spool that name the first entry of a
// duplicate localpart: past it, problems give the entry's number.
const maxLookups = 100

func newSpool(dir string) (*spool, error) {
	f, err := os.CreateTemp(dir, "provision-directory-*")
	if err != nil {
		return nil, fmt.Errorf("create the directory spool: %w — set TMPDIR to a writable directory", err)
	}
	s := &spool{f: f, w: bufio.NewWriterSize(f, 64<<10), path: f.Name()}
	if os.Remove(f.Name()) == nil {
		s.path = ""
	}
	return s, nil
}

func (s *spool) add(p *Person) error {
	b := s.buf[:0]
	b = binary.AppendUvarint(b, uint64(p.Line))
	for _, str := range []string{p.DN, p.Localpart, p.Original, p.DisplayName, p.Email, p.UserType, p.Recipient, p.SSOProvider, p.SSOSubject} {
		b = binary.AppendUvarint(b, uint64(len(str)))
		b = append(b, str...)
	}
	if p.Admin {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(p.Rooms)))
	for _, r := range p.Rooms {
		b = binary.AppendUvarint(b, uint64(len(r)))
		b = append(b, r...)
	}
	s.buf = b
	var n [binary.MaxVarintLen64]byte
	if _, err := s.w.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))]); err != nil {
		return s.fail(err)
	}
	if _, err := s.w.Write(b); err != nil {
		return s.fail(err)
	}
	s.n++
	return nil
}

func (s *spool) fail(err error) error {
	s.writeErr = fmt.Errorf("write the directory spool: %w — check the free space in TMPDIR", err)
	return s.writeErr
}

func (s *spool) flush() error {
	if s.writeErr != nil {
		return s.writeErr
	}
	if err := s.w.Flush(); err != nil {
		return s.fail(err)
	}
	return nil
}

var errCorrupt = errors.New("the directory spool is damaged")

// each decodes the people in the order they were added.
func (s *spool) each(fn func(Person) error) error {
	if err := s.flush(); err != nil {
		return err
	}
	size, err := s.f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("read the directory spool: %w", err)
	}
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, 0, size), 64<<10)
	var rec []byte
	for {
		n, err := binary.ReadUvarint(r)
		if err == io.EOF {
			return nil
		}
		if err != nil || n > 1<<24 {
			return errCorrupt
		}
		if uint64(cap(rec)) < n {
			rec = make([]byte, n)
		}
		rec = rec[:n]
		if _, err := io.ReadFull(r, rec); err != nil {
			return errCorrupt
		}
		p, ok := decodePerson(rec)
		if !ok {
			return errCorrupt
		}
		if err := fn(p); err != nil {
			return err
		}
	}
}

func decodePerson(b []byte) (Person, bool) {
	var p Person
	ok := true
	num := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			ok = false
			return 0
		}
		b = b[n:]
		return v
	}
	str := func() string {
		l := num()
		if !ok || l > uint64(len(b)) {
			ok = false
			return ""
		}
		s := string(b[:l])
		b = b[l:]
		return s
	}
	p.Line = int(num())
	for _, dst := range []*string{&p.DN, &p.Localpart, &p.Original, &p.DisplayName, &p.Email, &p.UserType, &p.Recipient, &p.SSOProvider, &p.SSOSubject} {
		*dst = str()
	}
	if !ok || len(b) == 0 {
		return p, false
	}
	p.Admin = b[0] == 1
	b = b[1:]
	for n := num(); ok && n > 0; n-- {
		p.Rooms = append(p.Rooms, str())
	}
	return p, ok && len(b) == 0
}

// locate names the entry with sequence number seq for a problem about a
// later duplicate: its DN, read back from the spool, where the first of two
// duplicates always is (it was valid).
func (s *spool) locate(seq int) string {
	fallback := fmt.Sprintf("in entry %d of the search", seq)
	if s.lookups >= maxLookups {
		return fallback
	}
	s.lookups++
	dn := ""
	errFound := errors.New("found")
	_ = s.each(func(p Person) error {
		if p.Line == seq {
			dn = p.DN
			return errFound
		}
		return nil
	})
	if dn == "" {
		return fallback
	}
	return "at " + dn
}

func (s *spool) close() error {
	err := s.f.Close()
	if s.path != "" {
		if rmErr := os.Remove(s.path); rmErr != nil && err == nil {
			err = rmErr
		}
	}
	return err
}
