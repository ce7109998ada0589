package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// fuzzCodec is a codec with a fixed file ID, so seeds stay valid between runs.
func fuzzCodec() *codec {
	c := newCodec(testKey)
	copy(c.fileID[:], "fuzz journal id!")
	return c
}

// seedRecords returns a valid record stream: intents, outcomes, a reset, a checkpoint,
// each starting at the offset it would have after a header of hdrLen bytes.
func seedRecords(c *codec, hdrLen int64) []byte {
	var b []byte
	var offs []int64
	for i, r := range []record{
		{kind: kindIntent, localpart: "alice", userID: "@alice:example.org", password: "pw-a"},
		{kind: kindIntent, localpart: "bob", userID: "@bob:example.org", password: "pw-b"},
		{kind: kindOutcome, localpart: "alice", status: "created", ref: 0},
		{kind: kindOutcome, localpart: "carol", userID: "@carol:example.org", status: "exists"},
		{kind: kindIntent, localpart: "dave", userID: "@dave:example.org", password: "pw-d"},
		{kind: kindOutcome, localpart: "dave", status: "created", ref: 4},
		{kind: kindCheck, ref: 4},
		{kind: kindIntent, localpart: "alice", userID: "@alice:example.org", password: ""},
	} {
		offs = append(offs, hdrLen+int64(len(b)))
		r.seq = uint64(i + 1)
		switch {
		case r.kind == kindOutcome && r.localpart == "alice":
			r.ref = offs[0]
		case r.ref != 0:
			r.ref = offs[r.ref]
		}
		b = c.appendRecord(b, r)
	}
	return b
}

// replayState replays data, which follows a header at start, into a fresh index and
// returns what the index holds, in a form that does not depend on its hash seeds.
func replayState(c *codec, data []byte, start int64) ([]string, replayed, error) {
	j := &Journal{idx: newIndex()}
	st, err := c.replay(bytes.NewReader(data), start, start+int64(len(data)), func(v *view, off int64) error {
		key, check := j.idx.hashBytes(v.localpart)
		j.note(v.kind, Status(v.status) == StatusCreated, key, check, func() string { return string(v.localpart) }, v.ref, off)
		return nil
	})
	var s []string
	for _, leaf := range j.idx.leaves {
		for _, sl := range leaf {
			s = append(s, fmt.Sprintf("record %d kind %d", valOffset(sl.val), valCode(sl.val)))
		}
	}
	for _, v := range j.idx.names {
		s = append(s, fmt.Sprintf("record %d kind %d", valOffset(v), valCode(v)))
	}
	slices.Sort(s)
	for _, sp := range j.spans {
		s = append(s, fmt.Sprintf("checkpoint [%d, %d)", sp.from, sp.to))
	}
	return s, st, err
}

// FuzzReplay feeds arbitrary bytes after a valid header to the replay. It must never
// panic, and what it accepts must be stable: replaying just the part it kept gives
// the same state, with nothing torn.
func FuzzReplay(f *testing.F) {
	c := fuzzCodec()
	hdr := c.header(hs)
	valid := seedRecords(c, int64(len(hdr)))
	f.Add([]byte{})
	f.Add(valid)
	f.Add(valid[:len(valid)-7])
	f.Add(append(bytes.Clone(valid[:len(valid)-20]), make([]byte, 20)...))
	f.Add(append(bytes.Clone(valid), make([]byte, 100)...))
	flipped := bytes.Clone(valid)
	flipped[40] ^= 1
	f.Add(flipped)
	f.Add(bytes.Repeat([]byte{0xff}, 64))

	f.Fuzz(func(t *testing.T, data []byte) {
		file := append(bytes.Clone(hdr), data...)
		h, err := parseHeader(file)
		if err != nil || !c.checkKey(h) || h.len != len(hdr) {
			t.Fatalf("the valid header does not parse: %v", err)
		}
		start, size := int64(h.len), int64(len(file))
		state, st, err := replayState(c, file[start:], start)
		if err != nil {
			ce, ok := errors.AsType[*CorruptError](err)
			if !ok {
				t.Fatalf("replay of bytes in memory: %v, want a *CorruptError", err)
			}
			if ce.Offset < start || ce.Offset >= size {
				t.Fatalf("damage reported at offset %d, outside [%d, %d)", ce.Offset, start, size)
			}
			return
		}
		if st.end < start || st.end > size || (!st.torn && st.end != size) {
			t.Fatalf("kept up to %d of [%d, %d], torn=%v", st.end, start, size, st.torn)
		}
		againState, again, err := replayState(c, file[start:st.end], start)
		if err != nil || again != (replayed{seq: st.seq, end: st.end}) || !reflect.DeepEqual(againState, state) {
			t.Fatalf("replaying the kept part differs: %v %+v %v, first %+v %v", err, again, againState, st, state)
		}
	})
}

// FuzzHeader: no bytes at all make parseHeader panic, and a header it accepts is
// whole.
func FuzzHeader(f *testing.F) {
	c := fuzzCodec()
	hdr := c.header(hs)
	f.Add(hdr)
	f.Add(hdr[:30])
	f.Add([]byte("provision journal\n"))
	f.Add([]byte("localpart,password\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeader(b)
		if err == nil && (h.len > len(b) || h.len < prefixLen+fileIDSize+nonceSize+tagSize+4) {
			t.Fatalf("accepted a header of %d bytes from %d", h.len, len(b))
		}
	})
}

func TestReplaySeeds(t *testing.T) {
	t.Parallel()
	c := fuzzCodec()
	hdr := c.header(hs)
	valid := seedRecords(c, int64(len(hdr)))
	if _, st, err := replayState(c, valid, int64(len(hdr))); err != nil || st.torn || st.seq != 8 {
		t.Fatalf("replay of the seed: %v, torn=%v, seq=%d", err, st.torn, st.seq)
	}
	// What a re-run sees of the seed, through the journal.
	path := filepath.Join(t.TempDir(), "journal")
	must(t, os.WriteFile(path, append(bytes.Clone(hdr), valid...), 0o600))
	j, err := Open(path, testKey, Options{Homeserver: hs})
	if err != nil {
		t.Fatalf("Open of the seed: %v", err)
	}
	defer j.Close()
	want := []Entry{
		{Localpart: "bob", UserID: "@bob:example.org", Password: "pw-b", Seq: 2},
		{Localpart: "carol", UserID: "@carol:example.org", Done: true, Status: "exists", Seq: 4},
		// Created in the session the checkpoint closes: handed off, so its password
		// is gone.
		{Localpart: "dave", UserID: "@dave:example.org", Done: true, Status: StatusDelivered, Seq: 5},
		// Created before that session began, then reset: a new intent.
		{Localpart: "alice", UserID: "@alice:example.org", Seq: 8},
	}
	if got := state(t, j); !reflect.DeepEqual(got, want) {
		t.Errorf("entries:\n got %+v\nwant %+v", got, want)
	}

	// Records sealed under another file ID (another journal, same key) are damage.
	other := newCodec(testKey)
	other.fileID = c.fileID
	other.fileID[0] ^= 1
	if _, _, err := replayState(other, valid, int64(len(hdr))); err == nil {
		t.Error("records moved from another journal were accepted")
	}

	// A record left out in the middle is damage, even though each record is intact.
	var gap []byte
	for _, seq := range []uint64{1, 3} {
		gap = c.appendRecord(gap, record{kind: kindIntent, seq: seq, localpart: "x"})
	}
	if _, _, err := replayState(c, gap, 0); err == nil {
		t.Error("a gap in the sequence was accepted")
	}

	// So is an outcome that refers forward, or to itself.
	var fwd []byte
	fwd = c.appendRecord(fwd, record{kind: kindOutcome, seq: 1, localpart: "x", status: "created", ref: 1000})
	if _, _, err := replayState(c, fwd, 100); err == nil {
		t.Error("an outcome referring past itself was accepted")
	}
}
