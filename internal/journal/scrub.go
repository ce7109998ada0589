package journal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// A scrub keeps the file holding exactly the passwords still owed. A password is
// owed while it is the one its user's current chain holds (the intent that began it)
// and no checkpoint covers the user; every other sealed password, handed off or
// superseded by a later intent, is overwritten with zeros in place and fsynced.
//
// Crash safety rests on one order: a password is zeroed only after the record that
// makes it no longer owed (the checkpoint, the superseding intent) is durable, and
// whether it is owed is judged from durable records alone. A crash in the middle of
// a scrub leaves some slots zeroed, some not, one perhaps half: each of them was no
// longer owed, and the next Open, seeing a sealed password before a checkpoint or a
// slot that fails its check, scrubs again. A slot that fails its check while its
// password is still owed is damage, reported as such.

// candidate is a sealed password found by deadSlots.
// scrubSlots walks the durable records twice and, with zero set, overwrites every
// sealed password that is no longer owed with zeros, then fsyncs. It returns the
// offsets of the owed passwords that fail their check. The first pass finds the
// intents that a later outcome keeps owed (a created user no checkpoint covers, a
// failed one); the second zeroes, record by record, every other intent's password
// that is not its user's current one. Nothing per dead password is held: a journal of
// a million delivered users is scrubbed in the memory of the set of owed ones.
func (j *Journal) scrubSlots(zero bool) (liveBad []int64, err error) {
	start, end := j.data, j.durable
	owedRef := map[int64]bool{}
	walk := func(fn func(v *view, off int64) error) error {
		_, err := j.c.replay(io.NewSectionReader(j.f, start, end-start), start, end, fn)
		if ce, ok := errors.AsType[*CorruptError](err); ok {
			ce.Path = j.path
		}
		return err
	}
	if err := walk(func(v *view, off int64) error {
		if v.kind != kindOutcome || v.ref == 0 {
			return nil
		}
		key, check := j.idx.hashBytes(v.localpart)
		val, ok := j.idx.get(key, check, string(v.localpart))
		if !ok || valOffset(val) != off {
			return nil // not the user's latest record: its chain is not current
		}
		if valCode(val) == codeCreated && covered(j.spans, off) {
			return nil // delivered: the password its chain began with is no longer owed
		}
		owedRef[v.ref] = true
		return nil
	}); err != nil {
		return nil, err
	}
	zeros := make([]byte, maxField)
	zeroed := 0
	if err := walk(func(v *view, off int64) error {
		if v.kind != kindIntent || (v.slot != slotSealed && v.slot != slotDamaged) {
			return nil
		}
		key, check := j.idx.hashBytes(v.localpart)
		val, ok := j.idx.get(key, check, string(v.localpart))
		// Unknown to the index (it cannot be) or a latest record past what was
		// walked: keep it.
		live := !ok || valOffset(val) >= end || (valCode(val) == codeIntent && valOffset(val) == off) || owedRef[off]
		switch {
		case live && v.slot == slotDamaged:
			liveBad = append(liveBad, off)
		case live || !zero:
		default:
			// The record was read already: overwriting its slot now is safe.
			if _, err := j.f.WriteAt(zeros[:v.slotLen], off+frameSize+int64(v.slotOff)); err != nil {
				return fmt.Errorf("scrub journal %s: %w", j.path, err)
			}
			zeroed++
		}
		return nil
	}); err != nil {
		return liveBad, err
	}
	if zeroed > 0 {
		if err := j.f.Sync(); err != nil {
			return liveBad, fmt.Errorf("scrub journal %s: %w", j.path, err)
		}
	}
	return liveBad, nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// scrub zeroes every password no longer owed. It runs after a checkpoint.
func (j *Journal) scrub() error {
	j.scrubMu.Lock()
	defer j.scrubMu.Unlock()
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	if j.failed != nil {
		err := j.failed
		j.mu.Unlock()
		return err
	}
	// Under j.mu, as the walk of the durable records and the index needs; a damaged
	// owed password shows when it is looked up.
	_, err := j.scrubSlots(true)
	j.mu.Unlock()
	if err != nil {
		// A failed fsync may have dropped pages the writer has written too.
		j.mu.Lock()
		j.failLocked(err)
		j.mu.Unlock()
	}
	return err
}

// migrate rewrites the version 2 journal j.f, whose header is h, in the current
// format: every record as it was, with the same sequence numbers and its refs moved
// to the new offsets. The new file is written beside the old one, fsynced and locked
// before it is renamed over it, so that at every instant the name holds one whole
// journal, and a process that opens it meanwhile finds it locked (see openLocked).
// It returns the new file's header and size; j.f is the new file.
//
// The old file's blocks are freed, not overwritten: they keep its sealed passwords
// until the filesystem reuses them.
func (j *Journal) migrate(h parsedHeader, size int64) (parsedHeader, int64, error) {
	fail := func(err error) (parsedHeader, int64, error) {
		return parsedHeader{}, 0, fmt.Errorf("rewrite journal %s in the current format: %w", j.path, err)
	}
	old := *j.c
	old.version = version2
	tmp := j.path + ".v3-tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(err) // a rewrite a crash cut short: the old file is still whole
	}
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail(err)
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := lock(f); err != nil {
		return fail(err)
	}
	hdr := j.c.header(h.homeserver)
	w := bufio.NewWriterSize(f, 64<<10)
	w.Write(hdr)
	type moved struct{ from, to int64 }
	var offs []moved
	pos := int64(len(hdr))
	var buf []byte
	st, err := old.replay(io.NewSectionReader(j.f, int64(h.len), size-int64(h.len)), int64(h.len), size, func(v *view, off int64) error {
		r := v.record()
		if r.ref != 0 {
			i, found := sort.Find(len(offs), func(i int) int { return cmpInt64(r.ref, offs[i].from) })
			if !found {
				return &CorruptError{Offset: off, Reason: fmt.Sprintf("record refers to offset %d, where no record starts", r.ref)}
			}
			r.ref = offs[i].to
		}
		offs = append(offs, moved{off, pos})
		buf = j.c.appendRecord(buf[:0], r)
		pos += int64(len(buf))
		_, err := w.Write(buf)
		return err
	})
	if err != nil {
		if ce, ok := errors.AsType[*CorruptError](err); ok {
			ce.Path = j.path
			return parsedHeader{}, 0, ce
		}
		return fail(err)
	}
	_ = st // a torn tail was never acknowledged: it is left behind
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return fail(err)
	}
	keep = true
	j.f.Close()
	j.f = f
	if err := syncDir(j.path); err != nil {
		return parsedHeader{}, 0, err
	}
	nh, err := parseHeader(hdr)
	if err != nil {
		return fail(err)
	}
	return nh, pos, nil
}
