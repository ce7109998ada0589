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
		check := func(f *os.File) error {
			if o.FreshEvenIfUndelivered {
				return nil
			}
			n, err := countUndelivered(path, f, key)
			if err != nil {
				return err
			}
			if n > 0 {
				return &UndeliveredError{Path: path, Count: n}
			}
			return nil
		}
		prev, err := moveAside(path, check)
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
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
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
	f, err = openLocked(j.path, os.O_RDWR)
	if err != nil {
		return err
	}
	j.f = f
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("journal %s is not a regular file", j.path)
	}
	size := fi.Size()
	head := make([]byte, min(size, int64(maxHeaderLen)))
	if _, err := f.ReadAt(head, 0); err != nil {
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
	if h.version == version2 {
		// Its passwords are under the records' tags, where no scrub can reach
		// them: rewrite it in the current format first.
		if h, size, err = j.migrate(h, size); err != nil {
			return err
		}
	}
	st, ls, err := j.load(h, size)
	if err != nil {
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
	if ls.sealedBeforeCheck || ls.damaged > 0 {
		// A checkpoint whose scrub a crash cut short, or a scrub's write torn:
		// finish it before anything else reads the file.
		liveDamaged, err := j.scrubSlots(true)
		if err != nil {
			return err
		}
		if len(liveDamaged) > 0 {
			return &CorruptError{Path: j.path, Offset: liveDamaged[0], Reason: "a password still owed fails authentication"}
		}
	}
	return nil
}

// loadStats is what load saw of the passwords in the file.
type loadStats struct {
	sealedBeforeCheck bool // a sealed password comes before a checkpoint: a scrub may be owed
	damaged           int  // slots that fail their check
}

// load replays the records of the file j.f, whose header is h, into j's index and
// sets j's offsets. On damage, j holds what came before it.
func (j *Journal) load(h parsedHeader, size int64) (replayed, loadStats, error) {
	var ls loadStats
	sealed := false
	st, err := j.c.replay(io.NewSectionReader(j.f, int64(h.len), size-int64(h.len)), int64(h.len), size, func(v *view, off int64) error {
		switch {
		case v.kind == kindCheck:
			ls.sealedBeforeCheck = ls.sealedBeforeCheck || sealed
		case v.slot == slotSealed:
			sealed = true
		case v.slot == slotDamaged:
			ls.damaged++
		}
		key, check := j.idx.hashBytes(v.localpart)
		j.note(v.kind, Status(v.status) == StatusCreated, key, check, func() string { return string(v.localpart) }, v.ref, off)
		return nil
	})
	j.seq = st.seq
	j.data, j.session, j.durable, j.next = int64(h.len), st.end, st.end, st.end
	if err != nil {
		if ce, ok := errors.AsType[*CorruptError](err); ok {
			ce.Path = j.path
			return st, ls, ce
		}
		return st, ls, err
	}
	return st, ls, nil
}

// openLocked opens the file at path and takes its lock, making sure that what it
// locked is still the file at path: a journal is replaced by a rename when it is
// rewritten in a new format (migrate), and the process that renames it holds the new
// file's lock before its name appears.
func openLocked(path string, flag int) (*os.File, error) {
	for range 100 {
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			return nil, fmt.Errorf("open journal: %w", err)
		}
		if err := lock(f); err != nil {
			f.Close()
			return nil, lockError(path, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("open journal: %w", err)
		}
		now, err := os.Stat(path)
		if err == nil && os.SameFile(fi, now) {
			return f, nil
		}
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("open journal: %w", err)
		}
	}
	return nil, fmt.Errorf("open journal %s: it was replaced 100 times while being opened", path)
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
	if _, err := j.f.WriteAt(h, 0); err != nil {
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
	return lockError(j.path, err)
}

func lockError(path string, err error) error {
	if errors.Is(err, ErrLocked) {
		return fmt.Errorf("journal %s: %w", path, ErrLocked)
	}
	return fmt.Errorf("lock journal %s: %w", path, err)
}

// moveAside renames the journal at path, if any, to a name no file has yet, and
// returns that name.
//
// check sees the locked old file first; its error stops the move.
func moveAside(path string, check func(*os.File) error) (string, error) {
	// Never pull a journal out from under a run that is using it.
	f, err := openLocked(path, os.O_RDONLY)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := check(f); err != nil {
		return "", err
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

// countUndelivered counts the users whose password the journal in f, locked, holds
// and has not handed off, as Undelivered would. With another key than its own it
// reads the records unchecked: the statuses and whether a slot is sealed are
// readable without the key. A damaged journal counts up to the damage; a file that
// is not a journal, or whose header is damaged, counts none (it is kept all the same).
func countUndelivered(path string, f *os.File, key [32]byte) (int, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("read old journal: %w", err)
	}
	head := make([]byte, min(fi.Size(), int64(maxHeaderLen)))
	if _, err := f.ReadAt(head, 0); err != nil {
		return 0, fmt.Errorf("read old journal %s: %w", path, err)
	}
	h, err := parseHeader(head)
	if err != nil || !fi.Mode().IsRegular() {
		return 0, nil
	}
	t := &Journal{path: path, f: f, c: newCodec(key), idx: newIndex()}
	t.c.fileID, t.c.version = h.fileID, h.version
	t.c.blind = !t.c.checkKey(h)
	if _, _, err := t.load(h, fi.Size()); err != nil {
		if _, ok := errors.AsType[*CorruptError](err); !ok {
			return 0, err
		}
	}
	u, err := t.Undelivered()
	if _, ok := errors.AsType[*CorruptError](err); err != nil && !ok {
		return 0, err
	}
	return len(u), nil
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
