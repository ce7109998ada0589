package journal

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Open opens the journal at path, replaying it, or creates it (mode 0600) if it does
// not exist. Only one process can have a journal open at a time.
func Open(path string, key [32]byte, o Options) (*Journal, error) {
	hs := strings.TrimRight(o.Homeserver, "/")
	if len(hs) > maxField {
		return nil, fmt.Errorf("journal %s: homeserver URL longer than %d bytes", path, maxField)
	}
	j := &Journal{
		path:   path,
		c:      newCodec(key),
		window: o.SyncWindow,
		idx:    newIndex(),
		queue:  newBatch(),
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if j.window == 0 {
		j.window = DefaultSyncWindow
	}
	if o.Fresh {
		prev, err := moveAside(path)
		if err != nil {
			return nil, err
		}
		j.previous = prev
	}
	if err := j.open(hs); err != nil {
		if j.f != nil {
			j.f.Close()
		}
		return nil, err
	}
	go j.run()
	return j, nil
}

func (j *Journal) open(hs string) error {
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err == nil {
		j.f = f
		if err := lock(f); err != nil {
			return j.lockError(err)
		}
		if err := j.initialize(hs); err != nil {
			return err
		}
		return syncDir(j.path)
	}
	if !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create journal: %w", err)
	}
	f, err = os.OpenFile(j.path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	j.f = f
	if err := lock(f); err != nil {
		return j.lockError(err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("journal %s is not a regular file", j.path)
	}
	size := fi.Size()
	head := make([]byte, min(size, int64(maxHeaderLen)))
	if _, err := io.ReadFull(f, head); err != nil {
		return fmt.Errorf("read journal %s: %w", j.path, err)
	}
	h, err := parseHeader(head)
	if !errors.Is(err, errNotJournal) {
		// A journal, if a damaged one: it holds passwords, so no one else may read
		// it, whatever mode an older provision or a careless copy gave it.
		if err := restrictMode(f, fi); err != nil {
			return fmt.Errorf("journal %s: %w", j.path, err)
		}
	}
	switch {
	case errors.Is(err, errShortHeader):
		// A crash while the journal was being created: the header was never
		// fsynced, so no record follows it. Start over in place.
		if err := f.Truncate(0); err != nil {
			return fmt.Errorf("reset journal %s: %w", j.path, err)
		}
		return j.initialize(hs)
	case errors.Is(err, errNotJournal):
		return fmt.Errorf("%s: %w", j.path, ErrNotJournal)
	case errors.Is(err, errHeaderCRC):
		return &CorruptError{Path: j.path, Offset: 0, Reason: "header checksum mismatch"}
	case err != nil:
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	if hs != "" && h.homeserver != hs {
		return fmt.Errorf("journal %s: %w (%s, not %s)", j.path, ErrOtherHomeserver, h.homeserver, hs)
	}
	j.c.fileID = h.fileID
	if !j.c.checkKey(h) {
		return fmt.Errorf("journal %s: %w", j.path, ErrWrongKey)
	}
	if _, err := f.Seek(int64(h.len), io.SeekStart); err != nil {
		return fmt.Errorf("read journal %s: %w", j.path, err)
	}
	st, err := j.c.replay(f, int64(h.len), size, func(v *view, off int64) error {
		key, check := j.idx.hashBytes(v.localpart)
		j.note(v.kind, Status(v.status) == StatusCreated, key, check, func() string { return string(v.localpart) }, v.ref, off)
		return nil
	})
	if err != nil {
		if ce, ok := errors.AsType[*CorruptError](err); ok {
			ce.Path = j.path
			return ce
		}
		return err
	}
	if st.torn {
		// The cut-off record was never acknowledged; appending after it would
		// turn it into damage in the middle of the file.
		if err := f.Truncate(st.end); err != nil {
			return fmt.Errorf("cut the torn end off journal %s: %w", j.path, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("cut the torn end off journal %s: %w", j.path, err)
		}
	}
	j.seq = st.seq
	j.data, j.session, j.durable, j.next = int64(h.len), st.end, st.end, st.end
	return nil
}

// restrictMode makes f, which fi describes, readable and writable by its owner alone.
func restrictMode(f *os.File, fi os.FileInfo) error {
	if fi.Mode().Perm() == 0o600 {
		return nil
	}
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("restrict the file's mode to 0600: %w", err)
	}
	return nil
}

// initialize writes a new header to the empty, locked file.
func (j *Journal) initialize(hs string) error {
	rand.Read(j.c.fileID[:])
	h := j.c.header(hs)
	if _, err := j.f.Write(h); err != nil {
		return fmt.Errorf("write journal header: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("write journal header: %w", err)
	}
	n := int64(len(h))
	j.data, j.session, j.durable, j.next = n, n, n, n
	return nil
}

func (j *Journal) lockError(err error) error {
	if errors.Is(err, ErrLocked) {
		return fmt.Errorf("journal %s: %w", j.path, ErrLocked)
	}
	return fmt.Errorf("lock journal %s: %w", j.path, err)
}

// moveAside renames the journal at path, if any, to a name no file has yet, and
// returns that name.
func moveAside(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("move old journal aside: %w", err)
	}
	defer f.Close()
	// Never pull a journal out from under a run that is using it.
	if err := lock(f); err != nil {
		if errors.Is(err, ErrLocked) {
			return "", fmt.Errorf("journal %s: %w", path, ErrLocked)
		}
		return "", fmt.Errorf("lock journal %s: %w", path, err)
	}
	base := path + ".old-" + time.Now().UTC().Format("20060102T150405Z")
	for i := 0; ; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		// A hard link fails rather than replace an existing file, as rename would.
		err := os.Link(path, name)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			if _, serr := os.Lstat(name); !errors.Is(serr, os.ErrNotExist) {
				continue
			}
			// No hard links on this filesystem: rename into the free name.
			if err := os.Rename(path, name); err != nil {
				return "", fmt.Errorf("move old journal aside: %w", err)
			}
		} else if err := os.Remove(path); err != nil {
			return "", fmt.Errorf("move old journal aside: %w", err)
		}
		if err := syncDir(path); err != nil {
			return "", err
		}
		return name, nil
	}
}

// syncDir makes a new or renamed name of path durable.
func syncDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("sync journal directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync journal directory: %w", err)
	}
	return nil
}
