package handoff_test

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/handoff"
)

const hs = "https://matrix.example.org"

// rows are awkward on purpose: CSV quoting must carry them through.
var rows = [][]string{
	{"@alice:example.org", "Abc-def.ghi_123", hs},
	{"@bob:example.org", `with,comma "quote" and` + "\nnewline", hs},
	{"@carol:example.org", "=1+2", hs},
}

func decrypt(t *testing.T, path string, id age.Identity) ([]byte, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := age.Decrypt(f, id)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func readCSV(t *testing.T, b []byte) [][]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatalf("credentials are not CSV: %v", err)
	}
	return recs
}

func checkMode(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 {
		t.Errorf("%s has mode %v, want -rw-------", path, fi.Mode())
	}
}

func TestCredentialsEncrypted(t *testing.T) {
	t.Parallel()
	keys := []key{x25519Key(t), ed25519Key(t), rsa2048Key(t)}
	var rcpts []age.Recipient
	for _, k := range keys {
		r, err := handoff.ParseRecipient(k.public)
		if err != nil {
			t.Fatal(err)
		}
		rcpts = append(rcpts, r)
	}
	path := filepath.Join(t.TempDir(), "credentials.age")
	c, err := handoff.CreateCredentials(path, rcpts, handoff.CredentialsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	for _, r := range rows {
		if err := c.Add(r[0], r[1], r[2]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("credentials file exists before Commit: %v", err)
	}
	if c.Count() != len(rows) {
		t.Errorf("Count() = %d, want %d", c.Count(), len(rows))
	}
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("age-encryption.org/v1\n")) {
		t.Errorf("file does not start with the binary age header: %.30q", raw)
	}
	if bytes.Contains(raw, []byte("Abc-def.ghi_123")) || bytes.Contains(raw, []byte("alice")) {
		t.Error("file holds credentials in the clear")
	}
	want := append([][]string{handoff.CredentialsHeader}, rows...)
	for _, k := range keys {
		plain, err := decrypt(t, path, k.identity)
		if err != nil {
			t.Errorf("%s identity cannot decrypt: %v", k.name, err)
			continue
		}
		if got := readCSV(t, plain); !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("%s identity decrypts %q, want %q", k.name, got, want)
		}
	}
	stranger := x25519Key(t)
	if _, err := decrypt(t, path, stranger.identity); err == nil {
		t.Error("an identity that is not a recipient decrypted the file")
	}
}

func TestCredentialsPlaintext(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "credentials.csv")
	c, err := handoff.CreateCredentials(path, nil, handoff.CredentialsOptions{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	if err := c.Add(rows[0][0], rows[0][1], rows[0][2]); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "user_id,password,homeserver\n@alice:example.org,Abc-def.ghi_123,"+hs+"\n"; got != want {
		t.Errorf("plaintext file is %q, want %q", got, want)
	}
}

func TestCredentialsNeedsAChoice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, _ := handoff.ParseRecipient(x25519Key(t).public)
	_, err := handoff.CreateCredentials(filepath.Join(dir, "a"), nil, handoff.CredentialsOptions{})
	if err == nil || !strings.Contains(err.Error(), "age-keygen") {
		t.Errorf("no recipients and no plaintext: %v, want an error with a hint", err)
	}
	_, err = handoff.CreateCredentials(filepath.Join(dir, "b"), []age.Recipient{r}, handoff.CredentialsOptions{Plaintext: true})
	if err == nil {
		t.Error("recipients and plaintext together were accepted")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused calls left %d files behind", len(entries))
	}
}

// A credentials file may hold the only copy of an earlier run's passwords: a new one
// never replaces it, even when it has the same name (issue 11), and Path says where
// the new one went.
func TestCredentialsNoClobber(t *testing.T) {
	t.Parallel()
	k := x25519Key(t)
	r, _ := handoff.ParseRecipient(k.public)
	path := filepath.Join(t.TempDir(), "credentials.age")
	if err := os.WriteFile(path, []byte("last run's"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := handoff.CreateCredentials(path, []age.Recipient{r}, handoff.CredentialsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Add("@a:example.org", "pw", "https://hs"); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "last run's" {
		t.Errorf("the earlier file changed to %q", b)
	}
	if want := filepath.Join(filepath.Dir(path), "credentials-2.age"); c.Path() != want {
		t.Errorf("Path() = %s, want %s", c.Path(), want)
	}
	aborted, err := handoff.CreateCredentials(path, []age.Recipient{r}, handoff.CredentialsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	aborted.Abort()
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 2 {
		t.Errorf("Abort left %d files, want the two committed ones", len(entries))
	}
}

// TestCredentialsStreams checks that rows reach the disk, encrypted, as
// they are added, rather than waiting in memory for Commit.
func TestCredentialsStreams(t *testing.T) {
	t.Parallel()
	k := x25519Key(t)
	r, _ := handoff.ParseRecipient(k.public)
	dir := t.TempDir()
	path := filepath.Join(dir, "credentials.age")
	c, err := handoff.CreateCredentials(path, []age.Recipient{r}, handoff.CredentialsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	const n = 5000 // about 350 KB of CSV
	for i := range n {
		if err := c.Add(fmt.Sprintf("@user%05d:example.org", i), "Abcdefghijklmnopqrstuvwx", hs); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("want one temporary file, got %v, %v", entries, err)
	}
	fi, err := entries[0].Info()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 256<<10 {
		t.Errorf("temporary file holds %d bytes before Commit: rows are kept in memory", fi.Size())
	}
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	plain, err := decrypt(t, path, k.identity)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(readCSV(t, plain)); got != n+1 {
		t.Errorf("decrypted %d rows, want %d", got, n+1)
	}
}

func TestCredentialsConcurrent(t *testing.T) {
	t.Parallel()
	k := x25519Key(t)
	r, _ := handoff.ParseRecipient(k.public)
	path := filepath.Join(t.TempDir(), "credentials.age")
	c, err := handoff.CreateCredentials(path, []age.Recipient{r}, handoff.CredentialsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				if err := c.Add(fmt.Sprintf("@u%d-%d:example.org", g, i), "pw", hs); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	plain, err := decrypt(t, path, k.identity)
	if err != nil {
		t.Fatal(err)
	}
	recs := readCSV(t, plain)
	seen := map[string]bool{}
	for _, rec := range recs[1:] {
		seen[rec[0]] = true
	}
	if len(recs) != 201 || len(seen) != 200 {
		t.Errorf("got %d rows, %d distinct users; want 200 of each", len(recs)-1, len(seen))
	}
	if err := c.Add("@late:example.org", "pw", hs); err == nil {
		t.Error("Add after Commit succeeded")
	}
}
