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
// A password stays in the file only while it is owed. Checkpoint overwrites, in
// place, the sealed password of every user it covers (and of every superseded
// intent) with zeros and fsyncs, so after it neither the file nor the key gives them
// back; Undelivered lists the ones still owed. The guarantee is about the file: on a
// copy-on-write filesystem, a snapshot, a backup or a flash device's remapped blocks,
// earlier bytes may survive, still sealed under the key (scrub.go).
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
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
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
	Status    Status // the outcome status when Done, stored as given; see StatusDelivered
	Seq       uint64 // order of the intent (of the outcome, for an outcome without intent)
}

// Status is an outcome's status. The journal stores it as given, so the report's
// statuses (report.Status, whose values are the same strings) convert to it as they
// are: journal.Status(report.Created) == StatusCreated.
type Status string

// Statuses the journal itself understands. Any other status is stored and returned
// as given, and treated like StatusFailed by Undelivered: the journal cannot tell
// that its password is dead.
const (
	// StatusCreated is the outcome of a request that set the intent's password on
	// the server (it created the account, or reset its password): the password is
	// live and owed to its user until a Checkpoint covers it. It is the report's
	// "created".
	StatusCreated Status = "created"
	// StatusDelivered is what Lookup returns instead of StatusCreated once a
	// Checkpoint has followed the outcome in the same session: the password has been
	// handed off, nothing more is owed to the user, and the journal no longer holds
	// it (Password is ""). It is never written to the file.
	StatusDelivered Status = "delivered"
	// StatusExists is the outcome of a request that found the account there
	// already: the intent's password was not set, so nothing is owed.
	StatusExists Status = "exists"
	// StatusFailed is the outcome of a request that failed. Its password may still
	// have been set (an answer lost on the way back), so Undelivered lists it.
	StatusFailed Status = "failed"
)

// DefaultSyncWindow is how long the writer waits for more records before an fsync
// when Options.SyncWindow is zero.
const DefaultSyncWindow = 2 * time.Millisecond

// Options tune Open.
type Options struct {
	// Fresh starts a new, empty journal. An existing journal is never deleted (its
	// passwords may be the only copy): it is moved aside to PATH.old-TIME, which
	// Previous reports. Open refuses with an *UndeliveredError (errors.Is
	// ErrUndelivered) while the old journal holds passwords not handed off (see
	// Undelivered), counted even when it was written with another key or for another
	// homeserver.
	Fresh bool
	// FreshEvenIfUndelivered lets Fresh move aside a journal that holds undelivered
	// passwords: they stay in the old file, readable with its key.
	FreshEvenIfUndelivered bool
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
	// ErrNotJournal: the file is something else than a provision journal.
	ErrNotJournal = errors.New("not a provision journal")
	// ErrUnsupportedVersion: the journal was written in a format this provision does
	// not read (by a newer release).
	ErrUnsupportedVersion = errors.New("unsupported journal format version")
	// ErrUndelivered: Options.Fresh found undelivered passwords in the old journal.
	// The error is an *UndeliveredError, which holds their number.
	ErrUndelivered = errors.New("the journal holds passwords that were never handed off")
	// ErrFull: the journal has reached the largest size its index can address.
	ErrFull = errors.New("the journal is full")
)

// CorruptError says where a journal is damaged. A record cut short at the very end
// is not damage: Open drops it.
//
// The library's errors say what failed, not what to do: the command that runs it
// knows its flags and adds the advice (branching with errors.Is and errors.As).
type CorruptError struct {
	Path   string
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("journal %s is damaged at offset %d: %s", e.Path, e.Offset, e.Reason)
}

// UndeliveredError is ErrUndelivered with the journal and the number of users whose
// password it still holds.
type UndeliveredError struct {
	Path  string
	Count int
}

func (e *UndeliveredError) Error() string {
	return fmt.Sprintf("journal %s: %v: %d", e.Path, ErrUndelivered, e.Count)
}

// Is makes errors.Is(err, ErrUndelivered) hold.
func (e *UndeliveredError) Is(target error) bool { return target == ErrUndelivered }

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

	scrubMu sync.Mutex // one scrub at a time
	// beforeScrub, if set, runs between a checkpoint and its scrub: a test's crash.
	beforeScrub func()
	mu          sync.Mutex
	idx         *index // nil once closed
	spans       []span // what the checkpoints cover, in file order
	seq         uint64 // the last sequence number handed out
	data        int64  // where the records begin, just past the header
	session     int64  // where this session's records begin
	durable     int64  // end of the records written and fsynced
	next        int64  // where the next record queued will start
	queue       *batch // records waiting for the writer
	spare       *batch // a written batch's buffers, for reuse by the next queue
	closed      bool
	failed      error // a write or fsync failed: the file past the last good batch is unknown

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// Previous returns where Open moved the old journal with Options.Fresh, or "".
func (j *Journal) Previous() string { return j.previous }

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
