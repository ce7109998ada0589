package handoff_test

import (
	"bytes"
	"encoding/csv"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/agetest"
	"github.com/provision-matrix/provision/internal/handoff"
)

// TestAgeCommandDecrypts checks that the files open with age -d -i KEY FILE,
// as the operator and the users will open them.
func TestAgeCommandDecrypts(t *testing.T) {
	t.Parallel()
	bin := agetest.Command(t, "age")
	dir := t.TempDir()
	keys := []key{x25519Key(t), ed25519Key(t), rsa2048Key(t)}
	var rcpts []age.Recipient
	for _, k := range keys {
		r, err := handoff.ParseRecipient(k.public)
		if err != nil {
			t.Fatal(err)
		}
		rcpts = append(rcpts, r)
	}

	creds := filepath.Join(dir, "credentials.age")
	c, err := handoff.CreateCredentials(creds, rcpts, handoff.CredentialsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	for _, r := range rows {
		if err := c.Add(r[0], r[1], r[2]); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	welcome, err := handoff.WriteWelcome(dir, "team/alice", rcpts[1], handoff.Welcome{Homeserver: hs, UserID: "@team/alice:example.org", Password: "Pass-word.1"})
	if err != nil {
		t.Fatal(err)
	}

	run := func(k key, file string) ([]byte, error) {
		keyFile := filepath.Join(dir, k.name+".key")
		if err := os.WriteFile(keyFile, k.private, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-d", "-i", keyFile, file)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Logf("age -d -i %s %s: %s", k.name, filepath.Base(file), stderr.String())
		}
		return out, err
	}

	want := append([][]string{handoff.CredentialsHeader}, rows...)
	for _, k := range keys {
		out, err := run(k, creds)
		if err != nil {
			t.Errorf("age cannot open the credentials file with the %s key: %v", k.name, err)
			continue
		}
		got, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
		if err != nil || !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("age -d with the %s key gave %q (%v), want %q", k.name, got, err, want)
		}
	}

	out, err := run(keys[1], welcome)
	if err != nil || !strings.Contains(string(out), "Pass-word.1") {
		t.Errorf("age cannot open the welcome note with the user's SSH key: %v\n%s", err, out)
	}
	if _, err := run(keys[0], welcome); err == nil {
		t.Error("age opened the user's welcome note with the operator's key")
	}
}
