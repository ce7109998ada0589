// Package journal is provision's write-ahead log: it lets a run that was killed at any
// instant be run again without creating an account twice or losing a password.
//
// Before a request that can create an account or set a password leaves the process,
// the caller records an intent (the localpart, the user ID and the password it is about
// to set) with Intent; when the answer comes, it records the outcome with Outcome. Both
// return only once the record is on disk (fsynced). OutcomeLater does not wait: an
// outcome lost in a crash leaves only its intent, which a re-run resolves by asking
// the server, so a run need not pay a second fsync wait per user. Once the created
// users' passwords are safely handed off (the credentials file renamed into place),
// one Checkpoint record says so for all of them at once. Reopening the journal
// replays it: Lookup tells a re-run what an earlier run did, and Pending lists the
// users whose request may or may not have reached the server.
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
// Memory: the journal keeps no record in memory, only an index of where each user's
// latest record is (index.go): about 18 bytes per user, so a million users cost some
// 18 MB however long their names or passwords. Lookup reads the record, and the
// password, back from the file (one or two reads from the page cache). The file takes
// about 200 bytes per user.
package journal

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
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
	Status    string // the outcome status when Done, stored as given; see StatusDelivered
	Seq       uint64 // order of the intent (of the outcome, for an outcome without intent)
}

// Statuses the journal itself understands. Any other status is stored and returned
// as given.
const (
	// StatusCreated is the outcome of a request that created the account. It is the
	// report's "created".
	StatusCreated = "created"
	// StatusDelivered is what Lookup returns instead of StatusCreated once a
	// Checkpoint has followed the outcome in the same session: the password has been
	// handed off and nothing more is owed to the user.
	StatusDelivered = "delivered"
)

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
	idx     *index // nil once closed
	spans   []span // what the checkpoints cover, in file order
	seq     uint64 // the last sequence number handed out
	data    int64  // where the records begin, just past the header
	session int64  // where this session's records begin
	durable int64  // end of the records written and fsynced
	next    int64  // where the next record queued will start
	queue   *batch // records waiting for the writer
	spare   *batch // a written batch's buffers, for reuse by the next queue
	closed  bool
	failed  error // a write or fsync failed: the file past the last good batch is unknown

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// batch is records that are written and fsynced together.
type batch struct {
	start   int64 // the offset of the first record
	buf     []byte
	records []queued
	done    chan struct{}
	err     error
}

// queued is a record with the offset it will have in the file.
type queued struct {
	kind      byte
	ref       int64
	off       int64
	localpart string
	created   bool
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
	st, err := j.c.replay(f, int64(h.len), size, func(v *view, off int64) error {
		key, check := j.idx.hashBytes(v.localpart)
		j.note(v.kind, string(v.status) == StatusCreated, key, check, func() string { return string(v.localpart) }, v.ref, off)
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

// OutcomeLater is Outcome without the wait: it returns once the record is queued, and
// the record is durable once a later Intent, Outcome or Checkpoint returns, or Close
// does. Lookup sees it once it is on disk. Use it for an outcome whose loss in a crash
// costs only a question on the next run: an intent with no outcome is resolved again
// (a run asks the server whether its request landed). A write error is returned by
// the next call that waits.
func (j *Journal) OutcomeLater(localpart, userID, status string) error {
	if status == "" {
		return fmt.Errorf("journal outcome for %s: empty status", localpart)
	}
	return j.appendAsync(record{kind: kindOutcome, localpart: localpart, userID: userID, status: status}, false)
}

// Checkpoint records, durably, that the passwords of every user this session
// recorded as created (since Open, with Outcome and StatusCreated) have been handed
// off. Call it once that is true: right after the credentials file is renamed into
// place. From then on, in this session and on every replay, Lookup reports those
// users as StatusDelivered.
//
// One record covers the whole session: a crash before it leaves every one of the
// session's users owed their password, and a crash after it none; there is no state in
// between. Users created by an earlier session are covered only if this session
// recorded them as created again (after handing their password off once more).
func (j *Journal) Checkpoint() error {
	return j.append(record{kind: kindCheck})
}

func (j *Journal) append(r record) error { return j.appendAsync(r, true) }

// appendAsync queues r and, if wait, returns once it is durable.
func (j *Journal) appendAsync(r record, wait bool) error {
	if r.kind != kindCheck && r.localpart == "" {
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
	switch r.kind {
	case kindOutcome:
		ref, err := j.chainStart(r.localpart)
		if err != nil {
			j.failLocked(err)
			j.mu.Unlock()
			return err
		}
		r.ref = ref
	case kindCheck:
		r.ref = j.session
	}
	b := j.queue
	off := j.next
	n := len(b.buf)
	b.buf = j.c.appendRecord(b.buf, record{kind: r.kind, seq: j.seq + 1, ref: r.ref, localpart: r.localpart, userID: r.userID, status: r.status, password: r.password})
	if end := off + int64(len(b.buf)-n); end > maxOffset {
		b.buf = b.buf[:n]
		j.mu.Unlock()
		return fmt.Errorf("journal %s is full (%d bytes): finish this run with another --journal, or start afresh with --fresh (the old one is kept)", j.path, off)
	}
	j.seq++
	j.next = off + int64(len(b.buf)-n)
	if len(b.records) == 0 {
		b.start = off
	}
	b.records = append(b.records, queued{kind: r.kind, ref: r.ref, off: off, localpart: r.localpart, created: r.status == StatusCreated})
	select {
	case j.kick <- struct{}{}:
	default:
	}
	j.mu.Unlock()
	if !wait {
		return nil
	}
	<-b.done
	return b.err
}

// chainStart returns the ref of a new outcome for localpart: the offset of the first
// record of the user's current chain (the intent holding the password, or the first
// outcome when there was none), or 0 for a user the journal does not know.
func (j *Journal) chainStart(localpart string) (int64, error) {
	key, check := j.idx.hash(localpart)
	v, ok := j.idx.get(key, check, localpart)
	switch {
	case !ok:
		return 0, nil
	case valCode(v) == codeIntent:
		return valOffset(v), nil
	}
	// The latest record is an outcome: its ref leads on, unless it began the chain.
	rec, err := j.readAt(valOffset(v))
	switch {
	case err != nil:
		return 0, err
	case rec.localpart != localpart:
		return 0, nil // another localpart's record under the same hashes: not ours
	case rec.ref != 0:
		return rec.ref, nil
	}
	return valOffset(v), nil
}

// note folds the record at off, of a localpart hashed to key and check, into the
// index: a later record for a localpart supersedes earlier ones. name is called only
// when the name itself is needed (rarely).
func (j *Journal) note(kind byte, created bool, key, check uint64, name func() string, ref, off int64) {
	if kind == kindCheck {
		j.spans = append(j.spans, span{from: ref, to: off})
		return
	}
	code := uint8(codeIntent)
	if kind == kindOutcome {
		code = codeOutcome
		if created {
			code = codeCreated
		}
	}
	j.idx.put(key, check, name, off, code)
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
	// The next queue takes the buffers of the batch written before this one: only
	// the writer touches a batch's buffers once it is queued, and waiters read only
	// err and done, so a long run allocates its buffers once.
	j.queue = newBatch()
	if sp := j.spare; sp != nil {
		j.queue.buf, j.queue.records = sp.buf[:0], sp.records[:0]
		j.spare = nil
	}
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
		j.failLocked(err)
	} else {
		for _, r := range b.records {
			var key, check uint64
			if r.kind != kindCheck {
				key, check = j.idx.hash(r.localpart)
			}
			j.note(r.kind, r.created, key, check, func() string { return r.localpart }, r.ref, r.off)
		}
		j.durable = b.start + int64(len(b.buf))
	}
	if cap(b.buf) <= 1<<20 {
		j.spare = &batch{buf: b.buf, records: b.records}
	}
	j.mu.Unlock()
	b.err = err
	close(b.done)
}

func (j *Journal) failLocked(err error) {
	if j.failed == nil {
		j.failed = err
	}
}

// Lookup returns what the journal knows of localpart. Only durable records count.
//
// The entry is read back from the file. Should that fail, Lookup reports the user as
// unknown and the journal as failed: every later Intent, Outcome and Checkpoint
// returns the error, so a caller that goes on to act on "unknown" is stopped before
// it sends anything.
func (j *Journal) Lookup(localpart string) (Entry, bool) {
	j.mu.Lock()
	if j.closed || j.idx == nil {
		j.mu.Unlock()
		return Entry{}, false
	}
	key, check := j.idx.hash(localpart)
	v, ok := j.idx.get(key, check, localpart)
	delivered := ok && valCode(v) == codeCreated && covered(j.spans, valOffset(v))
	j.mu.Unlock()
	if !ok {
		return Entry{}, false
	}
	e, ok, err := j.entryAt(localpart, valOffset(v))
	if err != nil {
		j.mu.Lock()
		j.failLocked(err)
		j.mu.Unlock()
		return Entry{}, false
	}
	if ok && delivered && e.Status == StatusCreated {
		e.Status = StatusDelivered
	}
	return e, ok
}

// entryAt builds localpart's entry from its latest record, at off. ok is false when
// that record belongs to another localpart (which shares its hashes).
func (j *Journal) entryAt(localpart string, off int64) (e Entry, ok bool, err error) {
	rec, err := j.readAt(off)
	if err != nil || rec.localpart != localpart {
		return Entry{}, false, err
	}
	e = Entry{Localpart: localpart, UserID: rec.userID, Seq: rec.seq}
	switch rec.kind {
	case kindIntent:
		e.Password = rec.password
		return e, true, nil
	case kindOutcome:
		e.Done, e.Status = true, rec.status
	default:
		return Entry{}, false, &CorruptError{Path: j.path, Offset: off, Reason: "a user's latest record is not an intent or an outcome"}
	}
	if rec.ref == 0 {
		return e, true, nil
	}
	root, err := j.readAt(rec.ref)
	if err != nil {
		return Entry{}, false, err
	}
	if root.localpart != localpart || root.kind == kindCheck {
		return Entry{}, false, &CorruptError{Path: j.path, Offset: off, Reason: fmt.Sprintf("the record refers to offset %d, another user's", rec.ref)}
	}
	e.Seq = root.seq
	if e.UserID == "" {
		e.UserID = root.userID
	}
	if root.kind == kindIntent {
		e.Password = root.password
	}
	return e, true, nil
}

// readAt reads back and authenticates the record at off.
func (j *Journal) readAt(off int64) (record, error) {
	buf := make([]byte, 320)
	n, err := j.f.ReadAt(buf, off)
	if n < frameSize {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return record{}, fmt.Errorf("read journal %s at offset %d: %w", j.path, off, err)
	}
	size := binary.BigEndian.Uint32(buf)
	if crc32.Checksum(buf[:4], castagnoli) != binary.BigEndian.Uint32(buf[4:]) || size < minBody || size > maxBody {
		return record{}, &CorruptError{Path: j.path, Offset: off, Reason: "record length checksum mismatch on reading it back"}
	}
	need := frameSize + int(size)
	if need > n {
		if need > len(buf) {
			buf = append(buf[:n], make([]byte, need-n)...)
		}
		if _, err := j.f.ReadAt(buf[n:need], off+int64(n)); err != nil {
			return record{}, fmt.Errorf("read journal %s at offset %d: %w", j.path, off, err)
		}
	}
	rec, err := j.c.openRecord(buf[frameSize:need])
	if err != nil {
		return record{}, &CorruptError{Path: j.path, Offset: off, Reason: err.Error() + " on reading it back"}
	}
	return rec, nil
}

// Len returns the number of users the journal knows.
func (j *Journal) Len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.idx == nil {
		return 0
	}
	return j.idx.len()
}

// Pending returns the users with an intent but no outcome, in Seq order: their
// request may or may not have reached the server. It reads the whole journal.
func (j *Journal) Pending() []Entry {
	var p []Entry
	_ = j.Each(func(e Entry) error {
		if !e.Done {
			p = append(p, e)
		}
		return nil
	})
	return p
}

// Each calls fn for every user the journal knows, in Seq order, and stops at the first
// error, which it returns. fn may call the journal's other methods; what they append
// is not visited. Each reads the whole journal, holding one entry at a time.
func (j *Journal) Each(fn func(Entry) error) error {
	j.mu.Lock()
	closed := j.closed
	start, end := j.data, j.durable
	j.mu.Unlock()
	if closed {
		return ErrClosed
	}
	var fnErr error
	_, err := j.c.replay(io.NewSectionReader(j.f, start, end-start), start, end, func(v *view, off int64) error {
		// A user's entry takes its Seq from the record that starts its chain: visit
		// the user there, if that record is still the start of its current chain.
		if fnErr != nil || (v.kind != kindIntent && (v.kind != kindOutcome || v.ref != 0)) {
			return nil
		}
		e, ok := j.Lookup(string(v.localpart))
		if ok && e.Seq == v.seq {
			fnErr = fn(e)
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		if ce, ok := errors.AsType[*CorruptError](err); ok {
			ce.Path = j.path
		}
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

// Close writes what is queued, stops the writer and closes the file. Afterwards
// Intent, Outcome, Checkpoint, Each and Close return ErrClosed, and Lookup, Pending
// and Len see an empty journal.
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
	j.idx, j.spans = nil, nil
	if j.failed != nil {
		return j.failed
	}
	if cerr != nil {
		return fmt.Errorf("close journal %s: %w", j.path, cerr)
	}
	return nil
}
