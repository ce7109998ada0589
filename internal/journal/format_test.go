package journal

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// fuzzCodec is a codec with a fixed file ID, so seeds stay valid between runs.
func fuzzCodec() *codec {
	c := newCodec(testKey)
	copy(c.fileID[:], "fuzz journal id!")
	return c
}

// seedRecords returns a valid record stream: intents, outcomes, a reset.
func seedRecords(c *codec) []byte {
	var b []byte
	for i, r := range []record{
		{kind: kindIntent, localpart: "alice", userID: "@alice:example.org", password: "pw-a"},
		{kind: kindIntent, localpart: "bob", userID: "@bob:example.org", password: "pw-b"},
		{kind: kindOutcome, localpart: "alice", status: "created"},
		{kind: kindOutcome, localpart: "carol", userID: "@carol:example.org", status: "exists"},
		{kind: kindIntent, localpart: "alice", userID: "@alice:example.org", password: ""},
	} {
		r.seq = uint64(i + 1)
		b = c.appendRecord(b, r)
	}
	return b
}

// FuzzReplay feeds arbitrary bytes after a valid header to the replay. It must never
// panic, and what it accepts must be stable: replaying just the part it kept gives
// the same state, with nothing torn.
func FuzzReplay(f *testing.F) {
	c := fuzzCodec()
	valid := seedRecords(c)
	f.Add([]byte{})
	f.Add(valid)
	f.Add(valid[:len(valid)-7])
	f.Add(append(bytes.Clone(valid[:len(valid)-20]), make([]byte, 20)...))
	f.Add(append(bytes.Clone(valid), make([]byte, 100)...))
	flipped := bytes.Clone(valid)
	flipped[40] ^= 1
	f.Add(flipped)
	f.Add(bytes.Repeat([]byte{0xff}, 64))

	hdr := c.header(hs)
	f.Fuzz(func(t *testing.T, data []byte) {
		file := append(bytes.Clone(hdr), data...)
		h, err := parseHeader(file)
		if err != nil || !c.checkKey(h) || h.len != len(hdr) {
			t.Fatalf("the valid header does not parse: %v", err)
		}
		start, size := int64(h.len), int64(len(file))
		st, err := c.replay(bytes.NewReader(file[start:]), start, size)
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
		again, err := c.replay(bytes.NewReader(file[start:st.end]), start, st.end)
		if err != nil || again.torn || again.end != st.end || again.seq != st.seq || !reflect.DeepEqual(again.entries, st.entries) {
			t.Fatalf("replaying the kept part differs: %v %+v, first %+v", err, again, st)
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
	valid := seedRecords(c)
	st, err := c.replay(bytes.NewReader(valid), 0, int64(len(valid)))
	if err != nil || st.torn || st.seq != 5 {
		t.Fatalf("replay of the seed: %v, torn=%v, seq=%d", err, st.torn, st.seq)
	}
	want := map[string]Entry{
		"alice": {Localpart: "alice", UserID: "@alice:example.org", Seq: 5},
		"bob":   {Localpart: "bob", UserID: "@bob:example.org", Password: "pw-b", Seq: 2},
		"carol": {Localpart: "carol", UserID: "@carol:example.org", Done: true, Status: "exists", Seq: 4},
	}
	if !reflect.DeepEqual(st.entries, want) {
		t.Errorf("entries %+v, want %+v", st.entries, want)
	}

	// Records sealed under another file ID (another journal, same key) are damage.
	other := newCodec(testKey)
	other.fileID = c.fileID
	other.fileID[0] ^= 1
	if _, err := other.replay(bytes.NewReader(valid), 0, int64(len(valid))); err == nil {
		t.Error("records moved from another journal were accepted")
	}

	// A record left out in the middle is damage, even though each record is intact.
	var gap []byte
	for _, seq := range []uint64{1, 3} {
		gap = c.appendRecord(gap, record{kind: kindIntent, seq: seq, localpart: "x"})
	}
	if _, err := c.replay(bytes.NewReader(gap), 0, int64(len(gap))); err == nil {
		t.Error("a gap in the sequence was accepted")
	}
}
