package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

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
	e, ok, err := j.entryAt(localpart, valOffset(v), delivered)
	if err != nil {
		j.mu.Lock()
		j.failLocked(err)
		j.mu.Unlock()
		return Entry{}, false
	}
	if ok && delivered && e.Status == StatusCreated {
		// Handed off: the password is no longer the journal's to give, whether or
		// not the scrub has zeroed it yet.
		e.Status, e.Password = StatusDelivered, ""
	}
	return e, ok
}

// entryAt builds localpart's entry from its latest record, at off. ok is false when
// that record belongs to another localpart (which shares its hashes). delivered says
// whether a checkpoint covers it: then a password that fails its check is a scrub in
// progress, not damage.
func (j *Journal) entryAt(localpart string, off int64, delivered bool) (e Entry, ok bool, err error) {
	rec, err := j.readAt(off)
	if err != nil || rec.localpart != localpart {
		return Entry{}, false, err
	}
	e = Entry{Localpart: localpart, UserID: rec.userID, Seq: rec.seq}
	switch rec.kind {
	case kindIntent:
		if rec.slot == slotDamaged {
			return Entry{}, false, &CorruptError{Path: j.path, Offset: off, Reason: "a password still owed fails authentication on reading it back"}
		}
		e.Password = rec.password
		return e, true, nil
	case kindOutcome:
		e.Done, e.Status = true, Status(rec.status)
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
		if root.slot == slotDamaged && !delivered {
			return Entry{}, false, &CorruptError{Path: j.path, Offset: rec.ref, Reason: "a password still owed fails authentication on reading it back"}
		}
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
	if crc32.Checksum(buf[:4], castagnoli) != binary.BigEndian.Uint32(buf[4:]) || size < minBody+uint32(j.c.minExtra()) || size > maxBody {
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

// Undelivered returns, in Seq order, every user whose password may be live on the
// server and has not been durably handed off: an intent with no outcome (its request
// may have landed), a failed outcome (its answer may have been lost), and a created
// outcome no checkpoint covers. Any other status the journal does not know is listed
// too, for the journal cannot tell that its password is dead; delivered and exists
// are not. Only users whose password the journal holds are listed: there is nothing
// to recover of the others.
//
// It is what a recovery command writes to a new handoff file, and what makes
// Options.Fresh refuse. Such a command opens the journal with Open, like a run: the
// lock keeps it from reading while a run is still adding to it, so there is no
// read-only mode. It reads the whole journal.
func (j *Journal) Undelivered() ([]Entry, error) {
	var u []Entry
	err := j.Each(func(e Entry) error {
		if owed(e) {
			u = append(u, e)
		}
		return nil
	})
	return u, err
}

// owed reports whether e's password may be live and is not handed off.
func owed(e Entry) bool {
	return e.Password != "" && (!e.Done || (e.Status != StatusDelivered && e.Status != StatusExists))
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
