package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provision-matrix/provision/internal/matrixtest"
)

// lastRecord returns the offset and kind of the last record of the journal at path,
// walking its frames as docs of internal/journal/format.go lay them out.
func lastRecord(t *testing.T, path string) (off int64, kind byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const magic = "provision journal\n"
	if !strings.HasPrefix(string(b), magic) {
		t.Fatalf("%s is not a journal", path)
	}
	hsLen := int(binary.BigEndian.Uint16(b[len(magic)+1:]))
	p := len(magic) + 1 + 2 + 4 + 16 + hsLen + 24 + 16 + 4
	off = -1
	for p+8 <= len(b) {
		n := int(binary.BigEndian.Uint32(b[p:]))
		off, kind = int64(p), b[p+8]
		p += 8 + n
	}
	if off < 0 || p != len(b) {
		t.Fatalf("%s: no whole record found (walked to %d of %d)", path, p, len(b))
	}
	return off, kind
}

// TestCrashBetweenRenameAndCheckpoint: a run whose credentials file was renamed into
// place but that died before its journal checkpoint leaves every one of its users owed
// their password. The next run, even one that replaces that file (--force), hands all
// of them off again with the same passwords and creates nobody; after its checkpoint
// nothing is owed.
func TestCrashBetweenRenameAndCheckpoint(t *testing.T) {
	const secret = "checkpoint-test-shared-secret"
	srv := matrixtest.NewServer(t, matrixtest.Options{SharedSecret: secret})
	dir := t.TempDir()
	id, keyFile := newIdentity(t, dir)
	var roster strings.Builder
	roster.WriteString("localpart\n")
	const users = 20
	for i := range users {
		fmt.Fprintf(&roster, "cp%02d\n", i)
	}
	write(t, filepath.Join(dir, "team.csv"), roster.String())
	write(t, filepath.Join(dir, "secret"), secret+"\n")
	creds, journal := filepath.Join(dir, "credentials.age"), filepath.Join(dir, "journal")
	args := []string{"--homeserver", srv.URL(), "--shared-secret-file", filepath.Join(dir, "secret"),
		"--recipient", id.Recipient().String(), "--concurrency", "4", "--rate", "0", "--quiet",
		"--credentials", creds, "--journal", journal, "--report", filepath.Join(dir, "report.csv"), "--force"}
	runOK := func(what string) {
		t.Helper()
		if code, _, stderr := runCLI(t, nil, append(args, filepath.Join(dir, "team.csv"))...); code != ExitOK {
			t.Fatalf("%s: exit %d\n%s", what, code, stderr)
		}
	}
	passwords := func() map[string]string {
		t.Helper()
		got := map[string]string{}
		for _, r := range decryptCredentials(t, creds, keyFile, id) {
			got[r[0]] = r[1]
		}
		return got
	}

	runOK("first run")
	first := passwords()
	if len(first) != users {
		t.Fatalf("first run handed off %d users, want %d", len(first), users)
	}
	// The crash: the journal as it was just before its checkpoint, the last record.
	off, kind := lastRecord(t, journal)
	if kind != 3 {
		t.Fatalf("the journal's last record is of kind %d, want the checkpoint (3)", kind)
	}
	if err := os.Truncate(journal, off); err != nil {
		t.Fatal(err)
	}
	registered := srv.Counts().Registrations

	runOK("run after the crash")
	again := passwords()
	if len(again) != users {
		t.Errorf("the run after the crash handed off %d users, want all %d of the crashed run", len(again), users)
	}
	for userID, pw := range first {
		if again[userID] != pw {
			t.Errorf("%s: handed off %q after the crash, want the first run's password", userID, again[userID])
		}
		if lp := strings.TrimSuffix(strings.TrimPrefix(userID, "@"), ":"+srv.ServerName()); !srv.CheckPassword(lp, pw) {
			t.Errorf("%s: the handed-off password does not log in", userID)
		}
	}
	if n := srv.Counts().Registrations - registered; n != 0 {
		t.Errorf("the run after the crash registered %d accounts, want none", n)
	}

	// After that run's checkpoint nothing is owed: the next run sends no registration
	// and hands nothing off (so it writes no credentials file, and the last one stays).
	before := total(srv.Counts().Requests)
	runOK("run after the checkpoint")
	if n := total(srv.Counts().Requests) - before; n > 5 {
		t.Errorf("a run with nothing owed sent %d requests, want only the preflight's", n)
	}
	if got := passwords(); len(got) != users {
		t.Errorf("the credentials file now has %d users, want the %d of the run before", len(got), users)
	}
	for lp, row := range readReport(t, filepath.Join(dir, "report.csv")) {
		if row[2] != "exists" {
			t.Errorf("after the checkpoint %s is %s, want exists (created and handed off by an earlier run)", lp, row[2])
		}
	}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
