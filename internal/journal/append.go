package journal

import (
	"errors"
	"fmt"
	"time"
)

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

// Intent records, durably, that a request for localpart is about to set password (""
// for none) on userID. A later intent for the same localpart supersedes this one.
func (j *Journal) Intent(localpart, userID, password string) error {
	return j.append(record{kind: kindIntent, localpart: localpart, userID: userID, password: password})
}

// Outcome records, durably, the answer to the last intent for localpart; userID ""
// keeps the one the intent recorded. Status is stored as given.
func (j *Journal) Outcome(localpart, userID string, status Status) error {
	if status == "" {
		return fmt.Errorf("journal outcome for %s: empty status", localpart)
	}
	return j.append(record{kind: kindOutcome, localpart: localpart, userID: userID, status: string(status)})
}

// OutcomeLater is Outcome without the wait: it returns once the record is queued, and
// the record is durable once a later Intent, Outcome or Checkpoint returns, or Close
// does. Lookup sees it once it is on disk. Use it for an outcome whose loss in a crash
// costs only a question on the next run: an intent with no outcome is resolved again
// (a run asks the server whether its request landed). A write error is returned by
// the next call that waits.
func (j *Journal) OutcomeLater(localpart, userID string, status Status) error {
	if status == "" {
		return fmt.Errorf("journal outcome for %s: empty status", localpart)
	}
	return j.appendAsync(record{kind: kindOutcome, localpart: localpart, userID: userID, status: string(status)}, false)
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
//
// Once the record is durable, Checkpoint scrubs the journal: it overwrites with zeros,
// in place, the password of every user it covers (and every password a later intent
// superseded), then fsyncs. From then on the file holds exactly the passwords still
// owed, the ones Undelivered lists. Should the scrub fail or a crash cut it short, the
// checkpoint stands and the next Open scrubs again; Lookup never returns a delivered
// user's password in the meantime.
func (j *Journal) Checkpoint() error {
	if err := j.append(record{kind: kindCheck}); err != nil {
		return err
	}
	if j.beforeScrub != nil {
		j.beforeScrub()
	}
	return j.scrub()
}

func (j *Journal) append(r record) error { return j.appendAsync(r, true) }

// appendAsync queues r and, if wait, returns once it is durable.
func (j *Journal) appendAsync(r record, wait bool) error {
	if r.kind != kindCheck && r.localpart == "" {
		return errors.New("journal: empty localpart")
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"localpart", r.localpart, maxField}, {"user ID", r.userID, maxField}, {"status", r.status, maxField}, {"password", r.password, maxPassword}} {
		if len(f.v) > f.max {
			// Never the value itself: it may be the password.
			return fmt.Errorf("journal %s: %s longer than %d bytes", r.localpart, f.name, f.max)
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
		return fmt.Errorf("journal %s: %w (%d bytes)", j.path, ErrFull, off)
	}
	j.seq++
	j.next = off + int64(len(b.buf)-n)
	if len(b.records) == 0 {
		b.start = off
	}
	b.records = append(b.records, queued{kind: r.kind, ref: r.ref, off: off, localpart: r.localpart, created: Status(r.status) == StatusCreated})
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
		// At its offset rather than appended: the file is not opened O_APPEND, for
		// on Linux that would send the scrub's in-place writes to the end too.
		_, err = j.f.WriteAt(b.buf, b.start)
		if err == nil {
			err = j.f.Sync()
			j.syncs.Add(1)
		}
		if err != nil {
			// After a failed write or fsync the file's end is unknown (and a failed
			// fsync may have dropped the dirty pages): write nothing more to it.
			err = fmt.Errorf("write journal %s: %w: the records queued since the last successful write may be lost", j.path, err)
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
