// Package journal is provision's write-ahead log: it lets a run that was killed at any
// instant be run again without creating an account twice or losing a password.
//
// Before a request that can create an account or set a password leaves the process,
// the caller records an intent (the localpart, the user ID and the password it is about
// to set) with Intent; when the answer comes, it records the outcome with Outcome. Both
// return only once the record is on disk (fsynced). Reopening the journal replays it:
// Lookup tells a re-run what an earlier run did, and Pending lists the users whose
// request may or may not have reached the server.
//
// The journal is one append-only file of length-prefixed records after a header that
// names the homeserver and holds a key check. Passwords are sealed with
// XChaCha20-Poly1305 under a key derived from the run's shared secret or admin token
// (DeriveKey); every record carries an authentication tag, so a damaged record is found
// rather than believed. Localparts, user IDs and statuses are stored readable, see
// format.go for why and for the byte layout.
//
// Concurrent Intent and Outcome calls are group-committed: one goroutine writes
// whatever has queued up and fsyncs once for all of it.
//
// Memory: the replayed state is a map from localpart to Entry: about 250 bytes per
// user with everyday names and a 24-character password (BenchmarkReplay reports it),
// so a million users cost some 250 MB. The file takes about 200 bytes per user.
package journal

import (
	"cmp"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is what the journal knows of one user: the latest intent, and its outcome if
// one was recorded after it.
type Entry struct {
	Localpart string
	UserID    string
	Password  string // decrypted; "" if none was journaled
	Done      bool   // an outcome was recorded after the intent
	Status    string // the outcome status when Done, stored as given
	Seq       uint64 // order of the intent (of the outcome, for an outcome without intent)
}

// DefaultSyncWindow is how long the writer waits for more records before an fsync
// when Options.SyncWindow is zero.
const DefaultSyncWindow = 2 * time.Millisecond

// Options tune Open.
type Options struct {
	// Fresh starts a new, empty journal. An existing journal is never deleted (its
	// passwords may be the only copy): it is moved aside to PATH.old-TIME, which
	// Previous reports.
	Fresh bool
	// Homeserver is recorded in a new journal's header; reopening a journal written
	// for another homeserver fails. Trailing slashes are ignored; "" on reopen skips
	// the check.
	Homeserver string
	// SyncWindow is how long the writer lets records gather before it fsyncs them as
	// one batch: 0 means DefaultSyncWindow, a negative value no wait (records still
	// share an fsync when they queue up while the previous one runs).
	SyncWindow time.Duration
}

var (
	// ErrWrongKey: the journal was written with another key.
	ErrWrongKey = errors.New("the journal was written with another shared secret or admin token")
	// ErrOtherHomeserver: the journal was written for another homeserver.
	ErrOtherHomeserver = errors.New("the journal was written for another homeserver")
	// ErrLocked: another process has the journal open.
	ErrLocked = errors.New("the journal is in use by another provision run")
	// ErrClosed: the journal was closed.
	ErrClosed = errors.New("journal is closed")
)

// CorruptError says where a journal is damaged. A record cut short at the very end
// is not damage: Open drops it.
type CorruptError struct {
	Path   string
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("journal %s is damaged at offset %d: %s: restore it from a backup, or start a new journal with --fresh (the damaged one is kept)", e.Path, e.Offset, e.Reason)
}

// DeriveKey turns the run's shared secret or admin token into the journal key.
func DeriveKey(secret []byte) [32]byte {
	k, err := hkdf.Key(sha256.New, secret, nil, "provision journal v1", 32)
	if err != nil {
		panic("journal: " + err.Error()) // only for an impossible key length
	}
	return [32]byte(k)
}

// Journal is an open journal. Its methods are safe for concurrent use.
type Journal struct {
	path     string
	previous string
	f        *os.File
	c        *codec
	window   time.Duration
	syncs    atomic.Uint64 // fsyncs of records, for the benchmark

	mu      sync.Mutex
	entries map[string]Entry
	seq     uint64 // the last sequence number handed out
	queue   *batch // records waiting for the writer
	closed  bool
	failed  error // a write or fsync failed: the file past the last good batch is unknown

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// batch is records that are written and fsynced together.
type batch struct {
	buf     []byte
	records []record
	done    chan struct{}
	err     error
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

// Open opens the journal at path, replaying it, or creates it (mode 0600) if it does
// not exist. Only one process can have a journal open at a time.
func Open(path string, key [32]byte, o Options) (*Journal, error) {
	hs := strings.TrimRight(o.Homeserver, "/")
	if len(hs) > maxField {
		return nil, fmt.Errorf("journal %s: homeserver URL longer than %d bytes", path, maxField)
	}
	j := &Journal{
		path:    path,
		c:       newCodec(key),
		window:  o.SyncWindow,
		entries: make(map[string]Entry),
		queue:   newBatch(),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
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
		return fmt.Errorf("journal %s is not a regular file: pick another --journal path", j.path)
	}
	size := fi.Size()
	head := make([]byte, min(size, int64(maxHeaderLen)))
	if _, err := io.ReadFull(f, head); err != nil {
		return fmt.Errorf("read journal %s: %w", j.path, err)
	}
	h, err := parseHeader(head)
	switch {
	case errors.Is(err, errShortHeader):
		// A crash while the journal was being created: the header was never
		// fsynced, so no record follows it. Start over in place.
		if err := f.Truncate(0); err != nil {
			return fmt.Errorf("reset journal %s: %w", j.path, err)
		}
		return j.initialize(hs)
	case errors.Is(err, errNotJournal):
		return fmt.Errorf("%s is not a provision journal: pick another --journal path, or move the file away", j.path)
	case errors.Is(err, errHeaderCRC):
		return &CorruptError{Path: j.path, Offset: 0, Reason: "header checksum mismatch"}
	case err != nil:
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	if hs != "" && h.homeserver != hs {
		return fmt.Errorf("journal %s: %w (%s, not %s): pass another --journal for this homeserver, or --fresh to start a new journal (the old one is kept)", j.path, ErrOtherHomeserver, h.homeserver, hs)
	}
	j.c.fileID = h.fileID
	if !j.c.checkKey(h) {
		return fmt.Errorf("journal %s: %w: run with the secret it was written with, or pass --fresh to start a new journal (the old one is kept)", j.path, ErrWrongKey)
	}
	if _, err := f.Seek(int64(h.len), io.SeekStart); err != nil {
		return fmt.Errorf("read journal %s: %w", j.path, err)
	}
	st, err := j.c.replay(f, int64(h.len), size)
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
	j.entries, j.seq = st.entries, st.seq
	return nil
}

// initialize writes a new header to the empty, locked file.
func (j *Journal) initialize(hs string) error {
	rand.Read(j.c.fileID[:])
	if _, err := j.f.Write(j.c.header(hs)); err != nil {
		return fmt.Errorf("write journal header: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("write journal header: %w", err)
	}
	return nil
}

func (j *Journal) lockError(err error) error {
	if errors.Is(err, ErrLocked) {
		return fmt.Errorf("journal %s: %w: wait for it to finish, or pass another --journal", j.path, ErrLocked)
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
			return "", fmt.Errorf("journal %s: %w: wait for it to finish before starting afresh", path, ErrLocked)
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

// Previous returns where Open moved the old journal with Options.Fresh, or "".
func (j *Journal) Previous() string { return j.previous }

// Intent records, durably, that a request for localpart is about to set password (""
// for none) on userID. A later intent for the same localpart supersedes this one.
func (j *Journal) Intent(localpart, userID, password string) error {
	return j.append(record{kind: kindIntent, localpart: localpart, userID: userID, password: password})
}

// Outcome records, durably, the answer to the last intent for localpart; userID ""
// keeps the one the intent recorded. Status is stored as given.
func (j *Journal) Outcome(localpart, userID, status string) error {
	if status == "" {
		return fmt.Errorf("journal outcome for %s: empty status", localpart)
	}
	return j.append(record{kind: kindOutcome, localpart: localpart, userID: userID, status: status})
}

func (j *Journal) append(r record) error {
	if r.localpart == "" {
		return errors.New("journal: empty localpart")
	}
	for _, f := range []struct{ name, v string }{{"localpart", r.localpart}, {"user ID", r.userID}, {"status", r.status}, {"password", r.password}} {
		if len(f.v) > maxField {
			// Never the value itself: it may be the password.
			return fmt.Errorf("journal %s: %s longer than %d bytes", r.localpart, f.name, maxField)
		}
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return fmt.Errorf("journal %s: %w", r.localpart, ErrClosed)
	}
	if j.failed != nil {
		j.mu.Unlock()
		return j.failed
	}
	j.seq++
	r.seq = j.seq
	b := j.queue
	b.buf = j.c.appendRecord(b.buf, r)
	b.records = append(b.records, r)
	select {
	case j.kick <- struct{}{}:
	default:
	}
	j.mu.Unlock()
	<-b.done
	return b.err
}

// run is the writer: it waits for records, lets more gather for the sync window,
// then writes and fsyncs them all at once.
func (j *Journal) run() {
	defer close(j.done)
	for {
		select {
		case <-j.kick:
		case <-j.stop:
			j.flush()
			return
		}
		if j.window > 0 {
			t := time.NewTimer(j.window)
			select {
			case <-t.C:
			case <-j.stop:
				t.Stop()
			}
		}
		j.flush()
	}
}

// flush writes and fsyncs the queued batch, then wakes its callers.
func (j *Journal) flush() {
	j.mu.Lock()
	b := j.queue
	if len(b.records) == 0 {
		j.mu.Unlock()
		return
	}
	j.queue = newBatch()
	err := j.failed
	j.mu.Unlock()

	if err == nil {
		_, err = j.f.Write(b.buf)
		if err == nil {
			err = j.f.Sync()
			j.syncs.Add(1)
		}
		if err != nil {
			// After a failed write or fsync the file's end is unknown (and a failed
			// fsync may have dropped the dirty pages): write nothing more to it.
			err = fmt.Errorf("write journal %s: %w: the records of this run after the last successful write may be lost; run again to resume", j.path, err)
		}
	}

	j.mu.Lock()
	if err != nil {
		if j.failed == nil {
			j.failed = err
		}
	} else {
		for _, r := range b.records {
			apply(j.entries, r)
		}
	}
	j.mu.Unlock()
	b.err = err
	close(b.done)
}

// Lookup returns what the journal knows of localpart. Only durable records count.
func (j *Journal) Lookup(localpart string) (Entry, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.entries[localpart]
	return e, ok
}

// Len returns the number of users the journal knows.
func (j *Journal) Len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.entries)
}

// Pending returns the users with an intent but no outcome, in Seq order: their
// request may or may not have reached the server.
func (j *Journal) Pending() []Entry {
	var p []Entry
	for _, e := range j.snapshot() {
		if !e.Done {
			p = append(p, e)
		}
	}
	return p
}

// Each calls fn for every user the journal knows, in Seq order, and stops at the first
// error, which it returns. fn may call the journal's other methods.
func (j *Journal) Each(fn func(Entry) error) error {
	j.mu.Lock()
	closed := j.closed
	j.mu.Unlock()
	if closed {
		return ErrClosed
	}
	for _, e := range j.snapshot() {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (j *Journal) snapshot() []Entry {
	j.mu.Lock()
	s := make([]Entry, 0, len(j.entries))
	for _, e := range j.entries {
		s = append(s, e)
	}
	j.mu.Unlock()
	slices.SortFunc(s, func(a, b Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	return s
}

// Close writes what is queued, stops the writer and closes the file. Afterwards
// Intent, Outcome, Each and Close return ErrClosed, and Lookup, Pending and Len see
// an empty journal: the decrypted passwords are dropped.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	j.closed = true
	j.mu.Unlock()

	close(j.stop)
	<-j.done
	cerr := j.f.Close() // also releases the lock

	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = map[string]Entry{}
	if j.failed != nil {
		return j.failed
	}
	if cerr != nil {
		return fmt.Errorf("close journal %s: %w", j.path, cerr)
	}
	return nil
}
