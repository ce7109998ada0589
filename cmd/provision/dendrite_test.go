package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/agetest"
	"github.com/provision-matrix/provision/internal/dendritetest"
	"github.com/provision-matrix/provision/internal/matrix"
)

// runCLI runs provision in-process and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	if _, ok := env["XDG_STATE_HOME"]; !ok {
		t.Setenv("XDG_STATE_HOME", stateDir(t))
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	code := exitCode(err, &stderr)
	return code, stdout.String(), stderr.String()
}

// stateDirs holds each test's state directory: every run of one test finds the
// journals of its earlier runs there, and no two tests share one (their fake servers
// often have the same server name).
var stateDirs sync.Map // testing.TB → string

func stateDir(t testing.TB) string {
	if d, ok := stateDirs.Load(t); ok {
		return d.(string)
	}
	d := t.TempDir()
	stateDirs.Store(t, d)
	t.Cleanup(func() { stateDirs.Delete(t) })
	return d
}

func newIdentity(t *testing.T, dir string) (*age.X25519Identity, string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "operator-key.txt")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return id, keyFile
}

// decryptCredentials opens the credentials file as an operator would: with the age
// command (the one on PATH, else `go tool age`; CI requires one), else with the age
// library.
func decryptCredentials(t *testing.T, path, keyFile string, id age.Identity) [][]string {
	t.Helper()
	var plain []byte
	if agePath, err := agetest.Lookup("age"); err == nil {
		out, err := exec.Command(agePath, "-d", "-i", keyFile, path).Output()
		if err != nil {
			t.Fatalf("age -d -i %s %s: %v", keyFile, path, err)
		}
		plain = out
	} else {
		if os.Getenv("PROVISION_REQUIRE_AGE") == "1" {
			t.Fatalf("PROVISION_REQUIRE_AGE=1: %v", err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r, err := age.Decrypt(f, id)
		if err != nil {
			t.Fatal(err)
		}
		plain, _ = io.ReadAll(r)
	}
	recs, err := csv.NewReader(bytes.NewReader(plain)).ReadAll()
	if err != nil {
		t.Fatalf("credentials are not CSV: %v", err)
	}
	if len(recs) == 0 || strings.Join(recs[0], ",") != "user_id,password,homeserver" {
		t.Fatalf("credentials header = %v", recs[:min(1, len(recs))])
	}
	return recs[1:]
}

func readReport(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], ",") != "localpart,user_id,status,errcode,error,attempts" {
		t.Fatalf("report header %v", recs[0])
	}
	out := map[string][]string{}
	for _, r := range recs[1:] {
		out[r[0]] = r
	}
	return out
}

// TestDendriteEndToEnd is the whole job against a real homeserver: 50 users created,
// every password from the decrypted credentials logs in, a second run changes nothing,
// and a roster with one bad row creates nobody.
func TestDendriteEndToEnd(t *testing.T) {
	srv := dendritetest.StartForTest(t)
	dir := t.TempDir()
	id, keyFile := newIdentity(t, dir)

	var roster strings.Builder
	roster.WriteString("localpart,displayname,email,admin\n")
	for i := range 50 {
		lp := fmt.Sprintf("e2e-user%02d", i)
		if i == 7 {
			lp = "E2E-Mixed07" // lowercased, with a note in the report
		}
		fmt.Fprintf(&roster, "%s,\"User %d, Tester\",u%d@example.org,%v\n", lp, i, i, i == 3)
	}
	rosterPath := filepath.Join(dir, "team.csv")
	if err := os.WriteFile(rosterPath, []byte(roster.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "credentials.age")
	rep := filepath.Join(dir, "report.csv")
	args := []string{"--homeserver", srv.URL, "--shared-secret-file", srv.SharedSecretFile,
		"--recipient", id.Recipient().String(), "--concurrency", "4", "--rate", "0",
		"--credentials", creds, "--report", rep, rosterPath}

	code, _, stderr := runCLI(t, nil, args...)
	if code != 0 {
		t.Fatalf("first run exited %d:\n%s", code, stderr)
	}
	report := readReport(t, rep)
	if len(report) != 50 {
		t.Fatalf("report has %d rows, want 50", len(report))
	}
	for lp, row := range report {
		if row[2] != "created" {
			t.Errorf("%s: status %q (%s %s), want created", lp, row[2], row[3], row[4])
		}
	}
	if row := report["e2e-mixed07"]; row == nil || !strings.Contains(row[4], "E2E-Mixed07") || row[1] != "@e2e-mixed07:"+srv.ServerName {
		t.Errorf("lowercased user's row = %v, want a note naming the original and @e2e-mixed07:%s", row, srv.ServerName)
	}
	if st, err := os.Stat(creds); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}

	rows := decryptCredentials(t, creds, keyFile, id)
	if len(rows) != 50 {
		t.Fatalf("credentials hold %d users, want 50", len(rows))
	}
	client, err := matrix.NewClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, r := range rows {
		userID, pw, hs := r[0], r[1], r[2]
		if hs != srv.URL {
			t.Errorf("%s: homeserver %q, want %q", userID, hs, srv.URL)
		}
		if strings.Contains(stderr, pw) {
			t.Errorf("%s's password appears on stderr", userID)
		}
		tok, err := client.Login(ctx, userID, pw)
		if err != nil {
			t.Errorf("log in as %s with the handed-off password: %v", userID, err)
			continue
		}
		_ = client.Logout(ctx, tok)
	}

	// Second run: every user exists, nothing changes, exit 0, no credentials file.
	creds2 := filepath.Join(dir, "credentials-2.age")
	args2 := append([]string(nil), args...)
	args2[len(args2)-4] = creds2 // --credentials value
	code, _, stderr = runCLI(t, nil, args2...)
	if code != 0 {
		t.Fatalf("second run exited %d:\n%s", code, stderr)
	}
	for lp, row := range readReport(t, rep) {
		if row[2] != "exists" {
			t.Errorf("second run: %s is %q, want exists", lp, row[2])
		}
	}
	if _, err := os.Stat(creds2); !os.IsNotExist(err) {
		t.Errorf("second run wrote a credentials file (%v) although nobody was created", err)
	}
	// The first passwords still work: nothing was reset.
	if tok, err := client.Login(ctx, rows[0][0], rows[0][1]); err != nil {
		t.Errorf("after the second run, %s no longer logs in: %v", rows[0][0], err)
	} else {
		_ = client.Logout(ctx, tok)
	}

	// A roster with one bad row is refused whole: its good users are not created.
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("localpart,displayname\ne2e-good1,Good\nbad user,Bad\ne2e-good2,Good\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, nil, "--homeserver", srv.URL, "--shared-secret-file", srv.SharedSecretFile,
		"--recipient", id.Recipient().String(), "--credentials", filepath.Join(dir, "c3.age"), "--report", filepath.Join(dir, "r3.csv"), bad)
	if code != 2 {
		t.Fatalf("bad roster: exit %d, want 2:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "bad.csv:3:1:") {
		t.Errorf("bad roster error does not name bad.csv:3:1:\n%s", stderr)
	}
	for _, lp := range []string{"e2e-good1", "e2e-good2"} {
		av, err := client.UsernameAvailable(ctx, lp)
		if err != nil || av != matrix.Available {
			t.Errorf("%s after a refused roster: availability %v, %v; want still available", lp, av, err)
		}
	}
}
