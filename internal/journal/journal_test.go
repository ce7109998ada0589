package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

const hs = "https://matrix.example.org"

var testKey = DeriveKey([]byte("registration shared secret"))

func open(t *testing.T, path string, o Options) *Journal {
	t.Helper()
	if o.Homeserver == "" {
		o.Homeserver = hs
	}
	j, err := Open(path, testKey, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func state(t *testing.T, j *Journal) []Entry {
	t.Helper()
	var s []Entry
	if err := j.Each(func(e Entry) error { s = append(s, e); return nil }); err != nil {
		t.Fatalf("Each: %v", err)
	}
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	j := open(t, path, Options{})
	must(t, j.Intent("alice", "@alice:example.org", "pw-alice-1"))
	must(t, j.Intent("bob", "@bob:example.org", "pw-bob"))
	must(t, j.Outcome("alice", "", "created"))
	must(t, j.Outcome("carol", "@carol:example.org", "exists")) // no intent before
	must(t, j.Intent("dave", "@dave:example.org", ""))

	want := []Entry{
		{Localpart: "alice", UserID: "@alice:example.org", Password: "pw-alice-1", Done: true, Status: "created", Seq: 1},
		{Localpart: "bob", UserID: "@bob:example.org", Password: "pw-bob", Seq: 2},
		{Localpart: "carol", UserID: "@carol:example.org", Done: true, Status: "exists", Seq: 4},
		{Localpart: "dave", UserID: "@dave:example.org", Seq: 5},
	}
	check := func(j *Journal) {
		t.Helper()
		if got := state(t, j); !reflect.DeepEqual(got, want) {
			t.Errorf("Each:\n got %+v\nwant %+v", got, want)
		}
		if got := j.Pending(); !reflect.DeepEqual(got, []Entry{want[1], want[3]}) {
			t.Errorf("Pending: got %+v", got)
		}
		if e, ok := j.Lookup("alice"); !ok || e != want[0] {
			t.Errorf("Lookup(alice) = %+v, %v", e, ok)
		}
		if e, ok := j.Lookup("nobody"); ok {
			t.Errorf("Lookup(nobody) = %+v, true", e)
		}
		if j.Len() != 4 {
			t.Errorf("Len = %d, want 4", j.Len())
		}
	}
	check(j)
	must(t, j.Close())
	check(open(t, path, Options{}))
}

func TestLaterRecordSupersedes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	j := open(t, path, Options{})
	must(t, j.Intent("alice", "@alice:example.org", "first"))
	must(t, j.Outcome("alice", "", "created"))
	must(t, j.Intent("bob", "@bob:example.org", "bob"))
	must(t, j.Intent("alice", "@alice:example.org", "reset")) // a password reset
	want := Entry{Localpart: "alice", UserID: "@alice:example.org", Password: "reset", Seq: 4}
	if e, _ := j.Lookup("alice"); e != want {
		t.Errorf("after reset: %+v, want %+v", e, want)
	}
	if p := j.Pending(); len(p) != 2 || p[0].Localpart != "bob" || p[1].Localpart != "alice" {
		t.Errorf("Pending not in Seq order: %+v", p)
	}
	must(t, j.Outcome("alice", "@alice:other", "updated"))
	want.UserID, want.Done, want.Status = "@alice:other", true, "updated"
	must(t, j.Close())
	if e, _ := open(t, path, Options{}).Lookup("alice"); e != want {
		t.Errorf("replayed: %+v, want %+v", e, want)
	}
}

func TestAfterClose(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	j := open(t, path, Options{})
	must(t, j.Intent("alice", "@alice:example.org", "pw"))
	must(t, j.Close())
	for name, err := range map[string]error{
		"Intent":  j.Intent("bob", "", "pw"),
		"Outcome": j.Outcome("alice", "", "created"),
		"Each":    j.Each(func(Entry) error { return nil }),
		"Close":   j.Close(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if _, ok := j.Lookup("alice"); ok || j.Len() != 0 || j.Pending() != nil {
		t.Error("a closed journal still hands out entries")
	}
	// The lock went with the file: another Open works.
	if open(t, path, Options{}).Len() != 1 {
		t.Error("reopened journal lost the intent")
	}
}

func TestBadArguments(t *testing.T) {
	t.Parallel()
	j := open(t, filepath.Join(t.TempDir(), "journal"), Options{})
	secret := strings.Repeat("s3cret", 20000)
	for name, err := range map[string]error{
		"empty localpart": j.Intent("", "@x:y", "pw"),
		"empty status":    j.Outcome("alice", "", ""),
		"long password":   j.Intent("alice", "@alice:y", secret),
		"long localpart":  j.Intent(strings.Repeat("a", 70000), "", "pw"),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error shows the password: %.80s", name, err)
		}
	}
	if j.Len() != 0 {
		t.Errorf("rejected records were kept: Len = %d", j.Len())
	}
}

func TestWrongKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	must(t, open(t, path, Options{}).Close())
	before, _ := os.ReadFile(path)
	_, err := Open(path, DeriveKey([]byte("another secret")), Options{Homeserver: hs})
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open with another key: %v, want ErrWrongKey", err)
	}
	for _, s := range []string{path, "another shared secret or admin token"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("a failed Open changed the journal")
	}
}

func TestDeriveKey(t *testing.T) {
	t.Parallel()
	a, b := DeriveKey([]byte("secret")), DeriveKey([]byte("secret"))
	if a != b {
		t.Error("DeriveKey is not deterministic")
	}
	if a == DeriveKey([]byte("secret2")) || a == [32]byte{} {
		t.Error("DeriveKey ignores its input")
	}
}

func TestHomeserver(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	must(t, open(t, path, Options{Homeserver: "https://a.example/"}).Close())

	_, err := Open(path, testKey, Options{Homeserver: "https://b.example"})
	if !errors.Is(err, ErrOtherHomeserver) {
		t.Fatalf("Open for another homeserver: %v, want ErrOtherHomeserver", err)
	}
	for _, s := range []string{"https://a.example", "https://b.example"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	// Trailing slashes do not make another homeserver; "" does not check.
	must(t, open(t, path, Options{Homeserver: "https://a.example"}).Close())
	must(t, open(t, path, Options{Homeserver: "https://a.example//"}).Close())
	j, err := Open(path, testKey, Options{})
	must(t, err)
	must(t, j.Close())
}

func TestLocked(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	j := open(t, path, Options{})
	must(t, j.Intent("alice", "", "pw"))
	if _, err := Open(path, testKey, Options{Homeserver: hs}); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
	if _, err := Open(path, testKey, Options{Homeserver: hs, Fresh: true}); !errors.Is(err, ErrLocked) {
		t.Errorf("Fresh Open of a journal in use: %v, want ErrLocked", err)
	}
	must(t, j.Intent("bob", "", "pw"))
	must(t, j.Close())
	if n := open(t, path, Options{}).Len(); n != 2 {
		t.Errorf("after the refused Opens, Len = %d, want 2", n)
	}
}

func TestFileMode(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	open(t, path, Options{})
	fi, err := os.Stat(path)
	must(t, err)
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("mode %v, want 0600", m)
	}
}

// A journal that an older provision, a careless copy or a umask left readable by
// others is made 0600 as it is opened: it holds passwords.
func TestOpenRestrictsLooseFileMode(t *testing.T) {
	t.Parallel()
	for _, mode := range []os.FileMode{0o644, 0o666, 0o640, 0o700} {
		path := filepath.Join(t.TempDir(), "journal")
		j := open(t, path, Options{})
		must(t, j.Intent("alice", "@alice:example.org", "pw-alice"))
		must(t, j.Close())
		must(t, os.Chmod(path, mode))
		j = open(t, path, Options{})
		fi, err := os.Stat(path)
		must(t, err)
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("a journal of mode %v is %v after Open, want 0600", mode, m)
		}
		if e := lookup(t, j, "alice"); e.Password != "pw-alice" {
			t.Errorf("mode %v: alice is %+v", mode, e)
		}
		must(t, j.Close())
	}
	// A file that is not a journal keeps its mode.
	path := filepath.Join(t.TempDir(), "roster.csv")
	must(t, os.WriteFile(path, []byte("localpart\nalice\n"), 0o644))
	if _, err := Open(path, testKey, Options{Homeserver: hs}); !errors.Is(err, ErrNotJournal) {
		t.Fatalf("Open of a CSV file: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("Open changed the mode of a file that is not a journal to %v", fi.Mode().Perm())
	}
}

func TestPasswordsNeverInFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	j := open(t, path, Options{})
	var pws []string
	for i := range 50 {
		pw := fmt.Sprintf("Pa55-word-%03d-xyz", i)
		pws = append(pws, pw)
		must(t, j.Intent(fmt.Sprintf("user%d", i), fmt.Sprintf("@user%d:example.org", i), pw))
	}
	must(t, j.Close())
	raw, err := os.ReadFile(path)
	must(t, err)
	for _, pw := range pws {
		// Also a part of it: a password split across a buffer edge, say.
		if bytes.Contains(raw, []byte(pw)) || bytes.Contains(raw, []byte(pw[4:12])) {
			t.Fatalf("password %q is in the file in plaintext", pw)
		}
	}
	// The documented trade-off: who was touched stays readable.
	if !bytes.Contains(raw, []byte("@user7:example.org")) || !bytes.HasPrefix(raw, []byte("provision journal\n")) {
		t.Error("user IDs or the magic line are not readable in the file")
	}
	if e, _ := open(t, path, Options{}).Lookup("user7"); e.Password != pws[7] {
		t.Errorf("replayed password %q, want %q", e.Password, pws[7])
	}
}

func TestConcurrentIntents(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	j := open(t, path, Options{})
	const workers, each = 64, 20
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				lp := fmt.Sprintf("u%d-%d", w, i)
				if err := j.Intent(lp, "@"+lp+":example.org", "pw-"+lp); err != nil {
					errs[w] = err
					return
				}
				if i%2 == 0 {
					if err := j.Outcome(lp, "", "created"); err != nil {
						errs[w] = err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	must(t, errors.Join(errs...))
	live := state(t, j)
	must(t, j.Close())

	j = open(t, path, Options{})
	replayed := state(t, j)
	if len(replayed) != workers*each {
		t.Fatalf("replay has %d entries, want %d", len(replayed), workers*each)
	}
	if !reflect.DeepEqual(live, replayed) {
		t.Error("replayed state differs from the state before Close")
	}
	for _, e := range replayed {
		if e.Password != "pw-"+e.Localpart {
			t.Fatalf("%s: password %q", e.Localpart, e.Password)
		}
	}
	if n := len(j.Pending()); n != workers*each/2 {
		t.Errorf("Pending = %d, want %d", n, workers*each/2)
	}
}

// writeJournal writes a journal with n users, each an intent then an outcome, and
// returns the file size after each record.
func writeJournal(t *testing.T, path string, n int) []int64 {
	t.Helper()
	j := open(t, path, Options{SyncWindow: -1})
	var ends []int64
	size := func() {
		fi, err := os.Stat(path)
		must(t, err)
		ends = append(ends, fi.Size())
	}
	size()
	for i := range n {
		lp := fmt.Sprintf("user%d", i)
		must(t, j.Intent(lp, "@"+lp+":example.org", "password-"+lp))
		size()
		must(t, j.Outcome(lp, "", "created"))
		size()
	}
	must(t, j.Close())
	return ends
}

func TestTornTail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	ends := writeJournal(t, full, 2)
	raw, err := os.ReadFile(full)
	must(t, err)
	last := ends[len(ends)-1]

	// The state after each whole record.
	states := make([][]Entry, len(ends))
	for i, end := range ends {
		path := filepath.Join(dir, fmt.Sprint("prefix", i))
		must(t, os.WriteFile(path, raw[:end], 0o600))
		j := open(t, path, Options{})
		states[i] = state(t, j)
		must(t, j.Close())
	}
	stateAt := func(cut int64) []Entry {
		i := len(ends) - 1
		for ends[i] > cut {
			i--
		}
		return states[i]
	}

	cases := map[string]func(cut int64) []byte{
		// A crash cuts the file anywhere in the last records.
		"cut": func(cut int64) []byte { return raw[:cut] },
		// The file grew before the data arrived: zeros from the cut to the end.
		"zero-filled": func(cut int64) []byte {
			return append(bytes.Clone(raw[:cut]), make([]byte, last-cut)...)
		},
	}
	for name, torn := range cases {
		// Cuts in the last two records: the last batch can hold several.
		for cut := ends[len(ends)-3] + 1; cut < last; cut++ {
			path := filepath.Join(dir, fmt.Sprintf("%s-%d", name, cut))
			must(t, os.WriteFile(path, torn(cut), 0o600))
			j, err := Open(path, testKey, Options{Homeserver: hs})
			if err != nil {
				t.Fatalf("%s at %d: Open: %v", name, cut, err)
			}
			want := stateAt(cut)
			if got := state(t, j); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s at %d: state %+v, want %+v", name, cut, got, want)
			}
			// The torn bytes are gone, so what is appended next is readable.
			must(t, j.Intent("zed", "@zed:example.org", "pw-zed"))
			must(t, j.Close())
			j = open(t, path, Options{})
			got := state(t, j)
			if len(got) != len(want)+1 || !reflect.DeepEqual(got[:len(want)], want) || got[len(want)].Password != "pw-zed" {
				t.Fatalf("%s at %d: after append and reopen: %+v", name, cut, got)
			}
			must(t, j.Close())
		}
	}
}

func TestTornHeader(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ends := writeJournal(t, filepath.Join(dir, "full"), 1)
	raw, err := os.ReadFile(filepath.Join(dir, "full"))
	must(t, err)
	for cut := range ends[0] {
		path := filepath.Join(dir, fmt.Sprint(cut))
		must(t, os.WriteFile(path, raw[:cut], 0o600))
		j, err := Open(path, testKey, Options{Homeserver: hs})
		if err != nil {
			t.Fatalf("header cut at %d: %v", cut, err)
		}
		must(t, j.Intent("alice", "", "pw"))
		must(t, j.Close())
		if e, ok := open(t, path, Options{}).Lookup("alice"); !ok || e.Password != "pw" {
			t.Fatalf("header cut at %d: the new journal lost its record", cut)
		}
	}
}

func TestCorruption(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ends := writeJournal(t, filepath.Join(dir, "full"), 2)
	raw, err := os.ReadFile(filepath.Join(dir, "full"))
	must(t, err)
	// Every byte of a record in the middle, and of the last whole record: only a
	// record cut short is a torn write.
	for _, rec := range []int{1, len(ends) - 2} {
		start, end := ends[rec], ends[rec+1]
		for i := start; i < end; i++ {
			b := bytes.Clone(raw)
			b[i] ^= 0x20
			path := filepath.Join(dir, fmt.Sprint(i))
			must(t, os.WriteFile(path, b, 0o600))
			_, err := Open(path, testKey, Options{Homeserver: hs})
			ce, ok := errors.AsType[*CorruptError](err)
			if !ok {
				t.Fatalf("byte %d flipped: Open: %v, want a *CorruptError", i, err)
			}
			if ce.Offset != start || ce.Path != path {
				t.Fatalf("byte %d flipped: error at offset %d of %s, want %d of %s", i, ce.Offset, ce.Path, start, path)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("offset %d", start)) {
				t.Fatalf("error %q does not name the offset", err)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, b) {
				t.Fatalf("byte %d flipped: Open changed the damaged journal", i)
			}
		}
	}
}

func TestDamagedHeader(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ends := writeJournal(t, filepath.Join(dir, "full"), 1)
	raw, err := os.ReadFile(filepath.Join(dir, "full"))
	must(t, err)
	for i := range ends[0] {
		b := bytes.Clone(raw)
		b[i] ^= 0x01
		path := filepath.Join(dir, fmt.Sprint(i))
		must(t, os.WriteFile(path, b, 0o600))
		j, err := Open(path, testKey, Options{})
		if err == nil {
			j.Close()
			t.Fatalf("byte %d of the header flipped: Open succeeded", i)
		}
		if errors.Is(err, ErrWrongKey) {
			t.Fatalf("byte %d of the header flipped: %v; want damage, not a wrong key", i, err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, b) {
			t.Fatalf("byte %d flipped: Open changed the damaged journal", i)
		}
	}
}

func TestNotAJournal(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "users.csv")
	content := []byte("localpart,password\nalice,x\n")
	must(t, os.WriteFile(path, content, 0o644))
	_, err := Open(path, testKey, Options{Homeserver: hs})
	if !errors.Is(err, ErrNotJournal) || !strings.Contains(err.Error(), "not a provision journal") {
		t.Fatalf("Open of a CSV file: %v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, content) {
		t.Error("Open changed a file that is not a journal")
	}
}

func TestFresh(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "journal")

	// No journal yet: Fresh just creates one.
	j := open(t, path, Options{Fresh: true})
	if j.Previous() != "" {
		t.Errorf("Previous = %q with nothing to move", j.Previous())
	}
	must(t, j.Intent("alice", "", "first-password"))
	must(t, j.Close())

	// Fresh ignores the old key and homeserver, and keeps the old journal.
	var olds []string
	for i, pw := range []string{"second-password", "third-password"} {
		// Each old journal holds alice's undelivered password: say it may be set aside
		// all the same (TestFreshRefusesUndelivered is the refusal).
		j, err := Open(path, DeriveKey([]byte(fmt.Sprint("secret", i))), Options{Fresh: true, FreshEvenIfUndelivered: true, Homeserver: "https://other.example"})
		must(t, err)
		if j.Len() != 0 {
			t.Errorf("fresh journal has %d entries", j.Len())
		}
		if !strings.HasPrefix(j.Previous(), path+".old-") {
			t.Errorf("Previous = %q", j.Previous())
		}
		olds = append(olds, j.Previous())
		must(t, j.Intent("alice", "", pw))
		must(t, j.Close())
	}
	// Moved twice within a second: the names must still differ.
	if olds[0] == olds[1] {
		t.Fatalf("both old journals moved to %s", olds[0])
	}
	for _, c := range []struct {
		path string
		key  [32]byte
		hs   string
		pw   string
	}{
		{olds[0], testKey, hs, "first-password"},
		{olds[1], DeriveKey([]byte("secret0")), "https://other.example", "second-password"},
		{path, DeriveKey([]byte("secret1")), "https://other.example", "third-password"},
	} {
		j, err := Open(c.path, c.key, Options{Homeserver: c.hs})
		must(t, err)
		if e, _ := j.Lookup("alice"); e.Password != c.pw {
			t.Errorf("%s: password %q, want %q", c.path, e.Password, c.pw)
		}
		must(t, j.Close())
	}
}

// A failed write leaves the file's end unknown: nothing more may be written.
func TestWriteFailureIsFinal(t *testing.T) {
	t.Parallel()
	j := open(t, filepath.Join(t.TempDir(), "journal"), Options{})
	must(t, j.Intent("alice", "", "pw"))
	j.f.Close() // the next write fails
	if err := j.Intent("bob", "", "secret-pw"); err == nil {
		t.Fatal("Intent succeeded on a failed file")
	} else if strings.Contains(err.Error(), "secret-pw") {
		t.Fatalf("error shows the password: %v", err)
	}
	if err := j.Outcome("alice", "", "created"); err == nil {
		t.Error("Outcome succeeded after a failed write")
	}
	if _, ok := j.Lookup("bob"); ok {
		t.Error("a record that never reached the disk is in the state")
	}
	if e, _ := j.Lookup("alice"); e.Done {
		t.Error("an outcome refused after a failure is in the state")
	}
}

// lookup is Lookup for a user the journal must know.
func lookup(t *testing.T, j *Journal, localpart string) Entry {
	t.Helper()
	e, ok := j.Lookup(localpart)
	if !ok {
		t.Fatalf("Lookup(%s): unknown", localpart)
	}
	return e
}

// TestCheckpoint follows the handoff of passwords across sessions: a session's
// created users are owed their password until its checkpoint, all at once, and a
// checkpoint covers an earlier session's users only if this one recorded them again.
func TestCheckpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "journal")

	// Session 1 creates alice and bob, finds carol, and crashes before its checkpoint.
	j := open(t, path, Options{})
	for _, u := range []string{"alice", "bob"} {
		must(t, j.Intent(u, "@"+u+":example.org", "pw-"+u))
		must(t, j.Outcome(u, "", StatusCreated))
	}
	must(t, j.Outcome("carol", "@carol:example.org", "exists"))
	must(t, j.Close())

	// Session 2 hands alice's password off again (bob is not reached: interrupted),
	// creates dave, and checkpoints.
	j = open(t, path, Options{})
	for _, u := range []string{"alice", "bob"} {
		if e := lookup(t, j, u); e.Status != StatusCreated || e.Password != "pw-"+u {
			t.Fatalf("after a crash before the checkpoint, %s is %+v, want created with its password", u, e)
		}
	}
	must(t, j.Outcome("alice", "@alice:example.org", StatusCreated))
	must(t, j.Intent("dave", "@dave:example.org", "pw-dave"))
	must(t, j.Outcome("dave", "", StatusCreated))
	fi, err := os.Stat(path)
	must(t, err)
	beforeCheckpoint := fi.Size()
	must(t, j.Checkpoint())

	want := map[string]Entry{
		// Handed off: the journal no longer holds the password (see Checkpoint).
		"alice": {Localpart: "alice", UserID: "@alice:example.org", Done: true, Status: StatusDelivered, Seq: 1},
		"bob":   {Localpart: "bob", UserID: "@bob:example.org", Password: "pw-bob", Done: true, Status: StatusCreated, Seq: 3},
		"carol": {Localpart: "carol", UserID: "@carol:example.org", Done: true, Status: "exists", Seq: 5},
		"dave":  {Localpart: "dave", UserID: "@dave:example.org", Done: true, Status: StatusDelivered, Seq: 7},
	}
	check := func(j *Journal, when string) {
		t.Helper()
		for u, w := range want {
			if e := lookup(t, j, u); e != w {
				t.Errorf("%s: %s is %+v, want %+v", when, u, e, w)
			}
		}
	}
	check(j, "after the checkpoint")
	must(t, j.Close())
	check(open(t, path, Options{}), "replayed")

	// A crash between the rename of the credentials file and the checkpoint leaves
	// the file as it was just before the checkpoint: every user of that session is
	// owed their password again, not some of them.
	raw, err := os.ReadFile(path)
	must(t, err)
	crashed := filepath.Join(dir, "crashed")
	must(t, os.WriteFile(crashed, raw[:beforeCheckpoint], 0o600))
	jc := open(t, crashed, Options{})
	for _, u := range []string{"alice", "bob", "dave"} {
		if e := lookup(t, jc, u); e.Status != StatusCreated {
			t.Errorf("crashed before the checkpoint: %s is %s, want created", u, e.Status)
		}
	}
}

// A checkpoint covers only what came before it in its session: a user created after
// it is owed a password until the next one.
func TestCheckpointCoversOnlyWhatPrecedes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	j := open(t, path, Options{})
	must(t, j.Checkpoint()) // nothing yet: harmless
	must(t, j.Intent("alice", "", "pw-alice"))
	must(t, j.Outcome("alice", "@alice:example.org", StatusCreated))
	must(t, j.Checkpoint())
	must(t, j.Intent("bob", "", "pw-bob"))
	must(t, j.Outcome("bob", "@bob:example.org", StatusCreated))
	check := func(j *Journal) {
		t.Helper()
		if s := lookup(t, j, "alice").Status; s != StatusDelivered {
			t.Errorf("alice: %s, want delivered", s)
		}
		if s := lookup(t, j, "bob").Status; s != StatusCreated {
			t.Errorf("bob, created after the checkpoint: %s, want created", s)
		}
	}
	check(j)
	must(t, j.Close())
	check(open(t, path, Options{}))
}

// Two localparts whose 64-bit keys collide are both kept, exactly.
func TestIndexKeyCollision(t *testing.T) {
	t.Parallel()
	x := newIndex()
	name := func(s string) func() string { return func() string { return s } }
	x.put(42, 1, name("alice"), 100, codeIntent)
	x.put(42, 2, name("bob"), 200, codeIntent)    // same key, another name
	x.put(42, 1, name("alice"), 300, codeCreated) // alice again: her slot
	x.put(42, 2, name("bob"), 400, codeOutcome)   // bob again: the names map
	x.put(7, 3, name("carol"), 500, codeIntent)
	for _, c := range []struct {
		check uint64
		name  string
		off   int64
		code  uint8
		ok    bool
	}{
		{1, "alice", 300, codeCreated, true},
		{2, "bob", 400, codeOutcome, true},
		{3, "dave", 0, 0, false}, // same key, neither check
	} {
		v, ok := x.get(42, c.check, c.name)
		if ok != c.ok || (ok && (valOffset(v) != c.off || valCode(v) != c.code)) {
			t.Errorf("get %s: %d %d %v, want %d %d %v", c.name, valOffset(v), valCode(v), ok, c.off, c.code, c.ok)
		}
	}
	if x.len() != 3 {
		t.Errorf("len = %d, want 3", x.len())
	}
}

// Should two localparts ever share both hashes, Lookup still never hands out the
// other user's entry: it compares the localpart of the record it reads back.
func TestLookupNeverReturnsAnotherUsersRecord(t *testing.T) {
	t.Parallel()
	j := open(t, filepath.Join(t.TempDir(), "journal"), Options{})
	must(t, j.Intent("bob", "@bob:example.org", "pw-bob"))
	j.mu.Lock()
	bk, bc := j.idx.hash("bob")
	v, _ := j.idx.get(bk, bc, "bob")
	ak, ac := j.idx.hash("alice")
	j.idx.put(ak, ac, func() string { return "alice" }, valOffset(v), codeIntent) // alice's slot → bob's record
	j.mu.Unlock()
	if e, ok := j.Lookup("alice"); ok {
		t.Errorf("Lookup(alice) = %+v from bob's record", e)
	}
	if e := lookup(t, j, "bob"); e.Password != "pw-bob" {
		t.Errorf("bob: %+v", e)
	}
}

// The index stays exact at a size where collisions of its 64-bit key may happen in
// other runs: every user is found with its own record, and unknown names are not.
func TestIndexManyUsers(t *testing.T) {
	t.Parallel()
	x := newIndex()
	const n = 200000
	for i := range n {
		name := fmt.Sprintf("user%d", i)
		k, c := x.hash(name)
		x.put(k, c, func() string { return name }, int64(i+1), codeIntent)
	}
	for i := range n {
		name := fmt.Sprintf("user%d", i)
		k, c := x.hash(name)
		if v, ok := x.get(k, c, name); !ok || valOffset(v) != int64(i+1) {
			t.Fatalf("%s: %d, %v", name, valOffset(v), ok)
		}
		name = fmt.Sprintf("other%d", i)
		k, c = x.hash(name)
		if _, ok := x.get(k, c, name); ok {
			t.Fatalf("%s found but never put", name)
		}
	}
	if x.len() != n {
		t.Errorf("len = %d, want %d", x.len(), n)
	}
}

// OutcomeLater returns before the disk: the record is durable once a later call that
// waits returns, or Close; a write error shows at the next call that waits.
func TestOutcomeLater(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	j := open(t, path, Options{})
	must(t, j.Intent("alice", "@alice:example.org", "pw-alice"))
	must(t, j.OutcomeLater("alice", "", StatusCreated))
	must(t, j.Intent("bob", "@bob:example.org", "pw-bob")) // waits, and so flushes alice's outcome
	if e := lookup(t, j, "alice"); !e.Done || e.Status != StatusCreated {
		t.Errorf("after a later durable record, alice is %+v", e)
	}
	must(t, j.OutcomeLater("bob", "", "exists"))
	must(t, j.Close())
	j = open(t, path, Options{})
	if e := lookup(t, j, "bob"); !e.Done || e.Status != "exists" {
		t.Errorf("after Close, bob is %+v", e)
	}
	if err := j.OutcomeLater("carol", "", ""); err == nil {
		t.Error("an empty status was accepted")
	}

	must(t, j.Intent("erin", "@erin:example.org", "pw-erin"))
	j.f.Close() // the next write fails
	if err := j.OutcomeLater("erin", "", "failed"); err != nil {
		t.Fatalf("OutcomeLater waited for the write: %v", err)
	}
	if err := j.Intent("dave", "", "secret-pw"); err == nil {
		t.Error("the write error did not show at the next call that waits")
	}
}
