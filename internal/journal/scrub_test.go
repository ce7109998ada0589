package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// sealed returns every password the journal file at path still holds in a form its
// key opens, by localpart, read straight from the records: what someone with the file
// and the secret could recover.
func sealed(t *testing.T, path string) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	must(t, err)
	h, err := parseHeader(raw)
	must(t, err)
	c := newCodec(testKey)
	c.fileID, c.version = h.fileID, h.version
	got := map[string][]string{}
	_, err = c.replay(bytes.NewReader(raw[h.len:]), int64(h.len), int64(len(raw)), func(v *view, off int64) error {
		if v.slot == slotSealed {
			got[string(v.localpart)] = append(got[string(v.localpart)], string(v.password))
		}
		return nil
	})
	must(t, err)
	return got
}

// session1 creates alice and bob and crashes before its handoff; session 2 hands
// alice off again, creates dave, fails erin, leaves frank unanswered, finds carol,
// resets grace twice (the first password superseded), and checkpoints.
func handoffSessions(t *testing.T, path string, hook func(*Journal)) {
	t.Helper()
	j := open(t, path, Options{SyncWindow: -1})
	for _, u := range []string{"alice", "bob"} {
		must(t, j.Intent(u, "@"+u+":example.org", "pw-"+u))
		must(t, j.Outcome(u, "", StatusCreated))
	}
	must(t, j.Close())

	j = open(t, path, Options{SyncWindow: -1})
	must(t, j.Outcome("alice", "@alice:example.org", StatusCreated))
	must(t, j.Intent("dave", "@dave:example.org", "pw-dave"))
	must(t, j.Outcome("dave", "", StatusCreated))
	must(t, j.Intent("erin", "@erin:example.org", "pw-erin"))
	must(t, j.Outcome("erin", "", StatusFailed))
	must(t, j.Intent("frank", "@frank:example.org", "pw-frank"))
	must(t, j.Outcome("carol", "@carol:example.org", StatusExists))
	must(t, j.Intent("grace", "@grace:example.org", "pw-grace-old"))
	must(t, j.Intent("grace", "@grace:example.org", "pw-grace"))
	if hook != nil {
		j.beforeScrub = func() { hook(j) }
	}
	must(t, j.Checkpoint())
	must(t, j.Close())
}

// What must be owed after handoffSessions: every password whose handoff no
// checkpoint covers, and nothing else.
var owedAfterHandoff = map[string][]string{
	"bob":   {"pw-bob"},
	"erin":  {"pw-erin"},
	"frank": {"pw-frank"},
	"grace": {"pw-grace"},
}

func TestCheckpointLeavesNoDeliveredPasswordInFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	handoffSessions(t, path, nil)
	if got := sealed(t, path); !reflect.DeepEqual(got, owedAfterHandoff) {
		t.Errorf("the file holds the passwords %v, want only the undelivered %v", got, owedAfterHandoff)
	}
	j := open(t, path, Options{})
	for _, u := range []string{"alice", "dave"} {
		if e := lookup(t, j, u); e.Status != StatusDelivered || e.Password != "" {
			t.Errorf("%s: %+v, want delivered without a password", u, e)
		}
	}
	var names []string
	u, err := j.Undelivered()
	must(t, err)
	for _, e := range u {
		names = append(names, e.Localpart)
		if w := owedAfterHandoff[e.Localpart]; len(w) != 1 || e.Password != w[0] {
			t.Errorf("undelivered %s has password %q, want %v", e.Localpart, e.Password, w)
		}
	}
	if want := []string{"bob", "erin", "frank", "grace"}; !slices.Equal(names, want) {
		t.Errorf("Undelivered = %v, want %v in Seq order", names, want)
	}
}

// A crash at any instant of a checkpoint and its scrub loses no undelivered
// password: the file cut at every record boundary, and the scrub cut short after
// any number of slots (and in the middle of one), all open, hold every owed
// password, and come out of Open scrubbed.
func TestCrashDuringCheckpointLosesNoUndeliveredPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "journal")
	var before []byte // the file with the checkpoint durable, not yet scrubbed
	handoffSessions(t, path, func(j *Journal) {
		var err error
		before, err = os.ReadFile(j.path)
		must(t, err)
	})
	after, err := os.ReadFile(path)
	must(t, err)

	// The record boundaries, and the slots the scrub zeroed.
	h, err := parseHeader(before)
	must(t, err)
	c := newCodec(testKey)
	c.fileID = h.fileID
	ends := []int64{int64(h.len)}
	var zeroed [][2]int // [start, end) of each slot the scrub zeroed
	_, err = c.replay(bytes.NewReader(before[h.len:]), int64(h.len), int64(len(before)), func(v *view, off int64) error {
		if v.slot == slotSealed {
			start := int(off) + frameSize + v.slotOff
			if lastNonZero(after[start:start+v.slotLen]) == 0 {
				zeroed = append(zeroed, [2]int{start, start + v.slotLen})
			}
		}
		return nil
	})
	must(t, err)
	for off := int64(h.len); off < int64(len(before)); {
		off += frameSize + int64(binary.BigEndian.Uint32(before[off:]))
		ends = append(ends, off)
	}
	if len(zeroed) != 3 { // alice's, dave's and grace's first password
		t.Fatalf("the scrub changed %d places, want 3 slots", len(zeroed))
	}

	check := func(name string, img []byte, delivered bool) {
		t.Helper()
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, img, 0o600))
		j, err := Open(p, testKey, Options{Homeserver: hs})
		if err != nil {
			t.Fatalf("%s: Open: %v", name, err)
		}
		u, err := j.Undelivered()
		must(t, err)
		got := map[string]string{}
		for _, e := range u {
			got[e.Localpart] = e.Password
		}
		must(t, j.Close())
		// Every password the image owes is there, and right.
		for lp, pws := range owedAfterHandoff {
			if _, intent := got[lp]; !intent && bytes.Contains(img, []byte("@"+lp+":")) && lp != "grace" {
				t.Errorf("%s: %s's password is lost", name, lp)
			}
			if pw, ok := got[lp]; ok && pw != pws[0] && !(lp == "grace" && pw == "pw-grace-old") {
				t.Errorf("%s: %s's password is %q", name, lp, pw)
			}
		}
		if !delivered {
			for _, lp := range []string{"alice", "dave"} {
				if pw, ok := got[lp]; bytes.Contains(img, []byte("@"+lp+":")) && (!ok || pw != "pw-"+lp) {
					t.Errorf("%s: before the checkpoint, %s is owed %q, want pw-%s", name, lp, pw, lp)
				}
			}
			return
		}
		if _, ok := got["alice"]; ok {
			t.Errorf("%s: alice is still owed after the checkpoint", name)
		}
		if s := sealed(t, p); !reflect.DeepEqual(s, owedAfterHandoff) {
			t.Errorf("%s: after Open the file holds %v, want %v", name, s, owedAfterHandoff)
		}
	}
	for i, end := range ends {
		check(fmt.Sprint("cut-", i), before[:end], i == len(ends)-1)
	}
	for k := range len(zeroed) + 1 {
		img := bytes.Clone(before)
		for _, z := range zeroed[:k] {
			copy(img[z[0]:z[1]], after[z[0]:z[1]])
		}
		check(fmt.Sprint("scrubbed-", k), img, true)
		if k < len(zeroed) {
			// The next slot's write torn: half of it zeros.
			z := zeroed[k]
			for _, half := range [][2]int{{z[0], (z[0] + z[1]) / 2}, {(z[0] + z[1]) / 2, z[1]}} {
				torn := bytes.Clone(img)
				clear(torn[half[0]:half[1]])
				check(fmt.Sprintf("torn-%d-%d", k, half[0]), torn, true)
			}
		}
	}
}

// A password still owed whose slot fails its check is damage, not a scrub.
func TestDamagedOwedPasswordIsCorruption(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	j := open(t, path, Options{})
	must(t, j.Intent("bob", "@bob:example.org", "pw-bob"))
	must(t, j.Outcome("bob", "", StatusCreated))
	must(t, j.Checkpoint())
	must(t, j.Intent("erin", "@erin:example.org", "pw-erin"))
	must(t, j.Close())
	raw, err := os.ReadFile(path)
	must(t, err)
	i := bytes.LastIndexByte(raw, '\n') - tagSize // inside erin's sealed password
	raw[i] ^= 1
	must(t, os.WriteFile(path, raw, 0o600))
	if _, err := Open(path, testKey, Options{Homeserver: hs}); err == nil {
		t.Fatal("Open accepted a damaged password that is still owed")
	} else if _, ok := errors.AsType[*CorruptError](err); !ok {
		t.Fatalf("Open: %v, want a *CorruptError", err)
	}
}

// A version 2 journal opens: it is rewritten in version 3, keeps every record's
// meaning and sequence number, and its handed-off passwords are gone.
func TestVersion2JournalIsMigrated(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "journal")
	c := fuzzCodec()
	c.version = version2
	hdr := c.header(hs)
	valid := seedRecords(c, int64(len(hdr)))
	// A rewrite a crash cut short is left over; so is a torn tail.
	must(t, os.WriteFile(path+".v3-tmp", []byte("provision journal\n"), 0o600))
	must(t, os.WriteFile(path, append(append(bytes.Clone(hdr), valid...), valid[:30]...), 0o644))
	if s := sealed(t, path+""); len(s["dave"]) != 1 {
		t.Fatalf("the version 2 seed does not hold dave's password: %v", s)
	}
	j := open(t, path, Options{})
	want := []Entry{
		{Localpart: "bob", UserID: "@bob:example.org", Password: "pw-b", Seq: 2},
		{Localpart: "carol", UserID: "@carol:example.org", Done: true, Status: "exists", Seq: 4},
		{Localpart: "dave", UserID: "@dave:example.org", Done: true, Status: StatusDelivered, Seq: 5},
		{Localpart: "alice", UserID: "@alice:example.org", Seq: 8},
	}
	if got := state(t, j); !reflect.DeepEqual(got, want) {
		t.Errorf("entries:\n got %+v\nwant %+v", got, want)
	}
	must(t, j.Intent("zed", "@zed:example.org", "pw-zed"))
	must(t, j.Close())
	raw, err := os.ReadFile(path)
	must(t, err)
	if raw[len(magic)] != version {
		t.Errorf("the journal is still version %d", raw[len(magic)])
	}
	if got, want := sealed(t, path), map[string][]string{"bob": {"pw-b"}, "zed": {"pw-zed"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("after the rewrite the file holds %v, want %v", got, want)
	}
	if _, err := os.Stat(path + ".v3-tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary file is left: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after the rewrite", fi.Mode().Perm())
	}
	j = open(t, path, Options{})
	if e := lookup(t, j, "zed"); e.Password != "pw-zed" || e.Seq != 9 {
		t.Errorf("zed after reopening: %+v", e)
	}
}

func TestUndelivered(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	j := open(t, path, Options{})
	must(t, j.Intent("delivered", "@delivered:x", "pw-1"))
	must(t, j.Outcome("delivered", "", StatusCreated))
	must(t, j.Checkpoint())
	must(t, j.Intent("created", "@created:x", "pw-2"))
	must(t, j.Outcome("created", "", StatusCreated))
	must(t, j.Intent("exists", "@exists:x", "pw-3"))
	must(t, j.Outcome("exists", "", StatusExists))
	must(t, j.Intent("failed", "@failed:x", "pw-4"))
	must(t, j.Outcome("failed", "", StatusFailed))
	must(t, j.Intent("unanswered", "@unanswered:x", "pw-5"))
	must(t, j.Intent("nopassword", "@nopassword:x", ""))
	must(t, j.Outcome("noIntent", "@noIntent:x", StatusCreated))
	must(t, j.Intent("odd", "@odd:x", "pw-6"))
	must(t, j.Outcome("odd", "", "updated"))
	check := func(j *Journal) {
		t.Helper()
		u, err := j.Undelivered()
		must(t, err)
		var got []string
		for _, e := range u {
			got = append(got, e.Localpart+"="+e.Password)
		}
		if want := []string{"created=pw-2", "failed=pw-4", "unanswered=pw-5", "odd=pw-6"}; !slices.Equal(got, want) {
			t.Errorf("Undelivered = %v, want %v", got, want)
		}
	}
	check(j)
	must(t, j.Close())
	check(open(t, path, Options{}))
}

// Fresh will not set aside a journal that holds passwords never handed off, even
// one written with another key or for another homeserver, unless told to.
func TestFreshRefusesUndelivered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "journal")
	j := open(t, path, Options{})
	must(t, j.Intent("alice", "@alice:x", "pw-alice"))
	must(t, j.Outcome("alice", "", StatusCreated))
	must(t, j.Intent("bob", "@bob:x", "pw-bob"))
	must(t, j.Intent("carol", "@carol:x", "pw-carol"))
	must(t, j.Outcome("carol", "", StatusExists))
	must(t, j.Close())
	before, err := os.ReadFile(path)
	must(t, err)

	for _, c := range []struct {
		name string
		key  [32]byte
		hs   string
	}{
		{"same key", testKey, hs},
		{"another key", DeriveKey([]byte("rotated token")), hs},
		{"another homeserver", testKey, "https://127.0.0.1:8008"},
	} {
		_, err := Open(path, c.key, Options{Homeserver: c.hs, Fresh: true})
		ue, ok := errors.AsType[*UndeliveredError](err)
		if !ok || !errors.Is(err, ErrUndelivered) || ue.Count != 2 || ue.Path != path {
			t.Errorf("%s: Fresh Open: %v, want ErrUndelivered with 2", c.name, err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Fatalf("%s: a refused Fresh changed the journal", c.name)
		}
	}
	j = open(t, path, Options{Fresh: true, FreshEvenIfUndelivered: true})
	if j.Previous() == "" || j.Len() != 0 {
		t.Fatalf("FreshEvenIfUndelivered: Previous %q, Len %d", j.Previous(), j.Len())
	}
	old := j.Previous()
	must(t, j.Intent("dave", "@dave:x", "pw-dave"))
	must(t, j.Outcome("dave", "", StatusCreated))
	must(t, j.Checkpoint())
	must(t, j.Close())
	// Everything handed off: Fresh goes ahead.
	j = open(t, path, Options{Fresh: true})
	if j.Previous() == "" {
		t.Error("Fresh did not move aside a journal with nothing undelivered")
	}
	if e := lookup(t, open(t, old, Options{}), "bob"); e.Password != "pw-bob" {
		t.Errorf("the journal set aside lost bob: %+v", e)
	}
}
