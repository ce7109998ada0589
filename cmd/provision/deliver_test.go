package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provision-matrix/provision/internal/handoff"
	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/matrixtest"
	"github.com/provision-matrix/provision/internal/pipeline"
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
	// Each run's credentials go to a new file beside the earlier ones (a file that
	// holds passwords is never replaced, --force or not): read the newest.
	passwords := func() map[string]string {
		t.Helper()
		newest := creds
		for i := 2; ; i++ {
			p := strings.TrimSuffix(creds, ".age") + fmt.Sprintf("-%d.age", i)
			if _, err := os.Stat(p); err != nil {
				break
			}
			newest = p
		}
		got := map[string]string{}
		for _, r := range decryptCredentials(t, newest, keyFile, id) {
			got[r[0]] = r[1]
		}
		return got
	}

	crashBeforeCheckpoint(t)
	runOK("first run")
	pipeline.Checkpointer = realCheckpointer
	first := passwords()
	if len(first) != users {
		t.Fatalf("first run handed off %d users, want %d", len(first), users)
	}
	// The crash came before the checkpoint (see crashBeforeCheckpoint): the journal's
	// last record is not one.
	if _, kind := lastRecord(t, journal); kind == 3 {
		t.Fatalf("the journal's last record is a checkpoint: the crash did not happen")
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

var realCheckpointer = pipeline.Checkpointer

// crashBeforeCheckpoint makes the next run stop, as a crash would, after its
// credentials file is in place and before its journal checkpoint: the journal then
// still owes every password of the run.
func crashBeforeCheckpoint(t *testing.T) {
	pipeline.Checkpointer = func(*journal.Journal) handoff.Checkpointer { return crashed{} }
	t.Cleanup(func() { pipeline.Checkpointer = realCheckpointer })
}

type crashed struct{}

func (crashed) Checkpoint() error { return errors.New("crashed before the checkpoint") }

// After a crash between the credentials file's rename and the checkpoint, and the
// credentials file lost (deleted by mistake), recover writes every password the run
// created to a new file; they log in, and the next run hands nothing off again.
func TestRecoverAfterCrashBeforeCheckpoint(t *testing.T) {
	const secret = "recover-test-shared-secret"
	srv := matrixtest.NewServer(t, matrixtest.Options{SharedSecret: secret})
	dir := t.TempDir()
	id, keyFile := newIdentity(t, dir)
	write(t, filepath.Join(dir, "team.csv"), "localpart\nrc1\nrc2\nrc3\n")
	write(t, filepath.Join(dir, "secret"), secret+"\n")
	common := []string{"--homeserver", srv.URL(), "--shared-secret-file", filepath.Join(dir, "secret"),
		"--recipient", id.Recipient().String(), "--quiet"}
	run := append(append([]string{}, common...), "--credentials", filepath.Join(dir, "c.age"), filepath.Join(dir, "team.csv"))

	crashBeforeCheckpoint(t)
	if code, _, stderr := runCLI(t, nil, run...); code != ExitOK {
		t.Fatalf("first run: exit %d\n%s", code, stderr)
	}
	pipeline.Checkpointer = realCheckpointer
	if err := os.Remove(filepath.Join(dir, "c.age")); err != nil {
		t.Fatal(err)
	}
	rec := append(append([]string{"recover"}, common...), "--credentials", filepath.Join(dir, "recovered.age"))
	code, stdout, stderr := runCLI(t, nil, rec...)
	if code != ExitOK {
		t.Fatalf("recover: exit %d\n%s", code, stderr)
	}
	rows := decryptCredentials(t, filepath.Join(dir, "recovered.age"), keyFile, id)
	if len(rows) != 3 {
		t.Fatalf("recover wrote %d passwords, want 3:\n%s", len(rows), stderr)
	}
	for _, r := range rows {
		lp := strings.TrimSuffix(strings.TrimPrefix(r[0], "@"), ":"+srv.ServerName())
		if !srv.CheckPassword(lp, r[1]) {
			t.Errorf("%s: the recovered password does not log in", r[0])
		}
		if !strings.Contains(stdout, "recovered "+r[0]+"\n") {
			t.Errorf("recover does not list %s:\n%s", r[0], stdout)
		}
	}
	// Recovered is handed off: a second recover finds nothing, and a run creates and
	// hands off nothing.
	if code, _, stderr := runCLI(t, nil, append(rec[:len(rec)-1], filepath.Join(dir, "again.age"))...); code != ExitOK || fileExists(filepath.Join(dir, "again.age")) {
		t.Errorf("second recover: exit %d, or it wrote a file:\n%s", code, stderr)
	}
	if code, _, stderr := runCLI(t, nil, run...); code != ExitOK || fileExists(filepath.Join(dir, "c.age")) {
		t.Errorf("run after recover: exit %d, or it handed something off again:\n%s", code, stderr)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
