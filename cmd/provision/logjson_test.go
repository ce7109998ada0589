package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/matrixtest"
)

// jsonLines parses every line of stderr as one JSON object, as a log shipper would,
// and fails the test on a line that is not one.
func jsonLines(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("stderr line %d is not a JSON object: %v\n%s", i+1, err, line)
			continue
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("stderr line %d has no %q: %s", i+1, k, line)
			}
		}
		recs = append(recs, rec)
	}
	return recs
}

// record is the first record whose message is msg or, with a trailing "*", starts
// with it.
func record(recs []map[string]any, msg string) map[string]any {
	for _, r := range recs {
		m, _ := r["msg"].(string)
		if m == msg || (strings.HasSuffix(msg, "*") && strings.HasPrefix(m, strings.TrimSuffix(msg, "*"))) {
			return r
		}
	}
	return nil
}

// TestJSONLogs runs provision with --log-format json as a cron job feeding a log
// shipper would, with a user the server refuses, one who exists, and one with a key
// of their own: every line on stderr is a JSON object, the summary is a "summary"
// record with the counts, the failed user and what to do, and the notices about the
// credentials and welcome files are records too. The secret appears nowhere.
func TestJSONLogs(t *testing.T) {
	t.Parallel()
	const secret = "json-logs-test-secret-0123456789"
	srv := matrixtest.NewServer(t, matrixtest.Options{
		SharedSecret: secret,
		Faults: func(r *http.Request) matrixtest.Fault {
			if r.Method != http.MethodPost {
				return matrixtest.Fault{}
			}
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if bytes.Contains(body, []byte(`"username":"carol"`)) {
				return matrixtest.Fault{Status: 400, Errcode: "M_EXCLUSIVE"}
			}
			return matrixtest.Fault{}
		},
	})
	srv.AddUser(matrixtest.FakeUser{Localpart: "bob"}, "an-old-password")
	e := &adminEnv{t: t, dir: t.TempDir()}
	e.id, e.keyFile = newIdentity(t, e.dir)
	dave, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	secretFile := e.write("secret.txt", secret+"\n")
	roster := e.write("team.csv", "localpart,recipient\nalice,\nbob,\ncarol,\ndave,"+dave.Recipient().String()+"\n")
	creds, report, handoff := e.path("creds.age"), e.path("report.csv"), e.path("handoff")

	var stdout, stderr bytes.Buffer
	err = run(t.Context(), []string{"--homeserver", srv.URL(), "--shared-secret-file", secretFile,
		"--recipient", e.id.Recipient().String(), "--credentials", creds, "--report", report,
		"--handoff-dir", handoff, "--journal", e.path("provision.journal"), "--log-format", "json", roster},
		strings.NewReader(""), &stdout, &stderr)
	if code := exitCode(err, &stderr); code != ExitFailed {
		t.Errorf("exit code %d, want %d (carol failed)", code, ExitFailed)
	}
	if strings.Contains(stderr.String(), secret) {
		t.Errorf("the shared secret is on stderr:\n%s", stderr.String())
	}
	recs := jsonLines(t, stderr.String())

	sum := record(recs, "summary")
	if sum == nil {
		t.Fatalf("no summary record on stderr:\n%s", stderr.String())
	}
	want := map[string]any{
		"level":       "ERROR",
		"users":       4.0,
		"counts":      map[string]any{"created": 2.0, "exists": 1.0, "failed": 1.0},
		"dry_run":     false,
		"report":      report,
		"credentials": creds,
	}
	for k, v := range want {
		if got := sum[k]; fmt.Sprint(got) != fmt.Sprint(v) {
			t.Errorf("summary %s = %v, want %v", k, got, v)
		}
	}
	failed, _ := sum["failed"].([]any)
	if len(failed) != 1 {
		t.Fatalf("summary failed = %v, want carol alone", sum["failed"])
	}
	carol, _ := failed[0].(map[string]any)
	if carol["user"] != "carol" || carol["user_id"] != "@carol:example.org" || carol["errcode"] != "M_EXCLUSIVE" {
		t.Errorf("summary's failed user = %v, want carol, @carol:example.org, M_EXCLUSIVE", carol)
	}
	if h, _ := carol["hint"].(string); !strings.Contains(h, "reserved by an application service") {
		t.Errorf("carol's hint = %q, want what to do about M_EXCLUSIVE", h)
	}

	written := record(recs, "passwords written to the credentials file*")
	if written == nil || written["credentials"] != creds || written["users"] != 1.0 || written["encrypted"] != true {
		t.Errorf("no record of the credentials file with its path and 1 user: %v\n%s", written, stderr.String())
	}
	if r := record(recs, "1 welcome file(s)*"); r == nil || !strings.Contains(r["msg"].(string), handoff) {
		t.Errorf("no record of dave's welcome file in %s:\n%s", handoff, stderr.String())
	}
	if r := record(recs, "user failed"); r == nil || r["user"] != "carol" {
		t.Errorf("no \"user failed\" record for carol:\n%s", stderr.String())
	}
}

// TestJSONLogsAdminPlanAndError: an applying admin run's plan lines are records, and
// so is the error a run ends with, its hint in a field of its own.
func TestJSONLogsAdminPlanAndError(t *testing.T) {
	t.Parallel()
	e := planServer(t)
	code, _, stderr := e.provision("--recipient", e.id.Recipient().String(), "--credentials", e.path("creds.age"),
		"--report", e.path("report.csv"), "--log-format", "json", e.path("team.csv"))
	if code != ExitOK {
		t.Fatalf("exit code %d, want 0:\n%s", code, stderr)
	}
	recs := jsonLines(t, stderr)
	if r := record(recs, "plan: *"); r == nil || r["level"] != "INFO" {
		t.Errorf("no \"plan: ...\" record:\n%s", stderr)
	}
	if r := record(recs, "+ @ann:example.org  create*"); r == nil {
		t.Errorf("the plan's lines are not records of their own:\n%s", stderr)
	}
	if r := record(recs, "summary"); r == nil || r["level"] != "INFO" {
		t.Errorf("no INFO summary record after a clean run:\n%s", stderr)
	}

	// A server that is not there (the last --homeserver wins): the run ends with an error.
	code, _, stderr = e.provision("--homeserver", "http://127.0.0.1:1", "--journal", e.path("other.journal"), "--recipient", e.id.Recipient().String(), "--credentials", e.path("creds2.age"),
		"--report", e.path("report2.csv"), "--log-format", "json", "--request-timeout", "2s", e.path("team.csv"))
	if code != ExitFailed {
		t.Errorf("exit code %d, want %d", code, ExitFailed)
	}
	recs = jsonLines(t, stderr)
	last := recs[len(recs)-1]
	if last["level"] != "ERROR" || last["exit_code"] != 1.0 || last["hint"] == nil || strings.Contains(last["msg"].(string), "hint:") {
		t.Errorf("the last record is not the error with its exit code and its hint apart: %v\n%s", last, stderr)
	}
}

// TestTextLogsKeepNotices: without --log-format json the notices stay plain lines.
func TestTextLogsKeepNotices(t *testing.T) {
	t.Parallel()
	e := planServer(t)
	_, _, stderr := e.provision("--recipient", e.id.Recipient().String(), "--credentials", e.path("creds.age"),
		"--report", filepath.Join(e.dir, "report.csv"), e.path("team.csv"))
	for _, want := range []string{"\nplan: ", "passwords of 2 user(s) written to ", "\n  created  "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("text stderr lacks %q:\n%s", want, stderr)
		}
	}
}
