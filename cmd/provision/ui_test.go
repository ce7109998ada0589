package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/creack/pty"

	"github.com/provision-matrix/provision/internal/matrixtest"
	"github.com/provision-matrix/provision/internal/redact"
	"github.com/provision-matrix/provision/internal/report"
	"github.com/provision-matrix/provision/internal/sanitize"
)

// provisionCommand runs the provision command (this test binary, as TestMain sets it
// up for the scripts) against a fresh fake Synapse that refuses to register "carol".
// --rate 20 makes the run last long enough (half a second) for the bar to be redrawn
// a few times; nothing is asserted about time.
func provisionCommand(t *testing.T, users int) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("provision")
	if err != nil {
		t.Fatalf("the provision command is not on PATH (TestMain sets it up): %v", err)
	}
	const secret = "pty-test-secret"
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
	dir := t.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	var roster strings.Builder
	roster.WriteString("localpart\ncarol\n")
	for i := range users - 1 {
		fmt.Fprintf(&roster, "user%02d\n", i)
	}
	for name, data := range map[string]string{"secret.txt": secret, "team.csv": roster.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "--homeserver", srv.URL(), "--shared-secret-file", "secret.txt",
		"--recipient", id.Recipient().String(), "--credentials", "creds.age", "--report", "report.csv",
		"--rate", "20", "team.csv")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TERM=xterm-256color", "XDG_STATE_HOME="+stateDir(t))
	return cmd
}

var escape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// TestProgressBarInTerminal runs provision in a real pseudo-terminal: it draws a
// progress bar with done/total and failures, completes it, and prints the summary
// on a line of its own after it.
func TestProgressBarInTerminal(t *testing.T) {
	cmd := provisionCommand(t, 12)
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ptmx.Close() })
	var out bytes.Buffer
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(&out, ptmx)
		copied <- err
	}()
	werr := cmd.Wait()
	// Once the command has exited, reading the terminal ends with EIO on Linux.
	if err := <-copied; err != nil && !errors.Is(err, syscall.EIO) {
		t.Fatalf("reading the terminal: %v", err)
	}
	screen := out.String()
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ExitCode() != ExitFailed {
		t.Fatalf("exit: %v, want 1 (carol fails); output:\n%q", werr, screen)
	}

	if !escape.MatchString(screen) {
		t.Errorf("no escape codes on a terminal: was a bar drawn?\n%q", screen)
	}
	plain := escape.ReplaceAllString(screen, "")
	frames := regexp.MustCompile(`provisioning +(\d+)/12`).FindAllStringSubmatch(plain, -1)
	if len(frames) == 0 {
		t.Fatalf("no progress bar in the output:\n%q", plain)
	}
	if last := frames[len(frames)-1][1]; last != "12" {
		t.Errorf("the last frame of the bar shows %s/12, want 12/12:\n%q", last, plain)
	}
	if !strings.Contains(plain, "1 failed") {
		t.Errorf("the bar does not count the failure:\n%q", plain)
	}
	// The summary comes after the finished bar, starting on a fresh line, and
	// nothing is drawn after it.
	end := strings.LastIndex(plain, "12/12")
	sum := strings.Index(plain, "12 users in")
	if sum < end {
		t.Fatalf("the summary is not after the finished bar:\n%q", plain)
	}
	if between := plain[end:sum]; !strings.Contains(between, "\n") {
		t.Errorf("the summary does not start on a line of its own: %q", between)
	}
	if tail := screen[strings.Index(screen, "12 users in"):]; escape.MatchString(tail) {
		t.Errorf("escape codes after the summary: %q", tail)
	}
	for _, want := range []string{`(?m)^  created +11 `, `(?m)^  failed +1 `, `@carol:example.org +M_EXCLUSIVE`, `hint: the name is reserved by an application service`} {
		if !regexp.MustCompile(want).MatchString(strings.ReplaceAll(plain, "\r\n", "\n")) {
			t.Errorf("the summary lacks %s:\n%s", want, plain)
		}
	}
}

// TestNoEscapeCodesOffTerminal: with stderr on a pipe (cron, CI, a log file), there
// is no bar and no escape code, only plain lines.
func TestNoEscapeCodesOffTerminal(t *testing.T) {
	cmd := provisionCommand(t, 12)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitFailed {
		t.Fatalf("exit: %v, want 1; stderr:\n%s", err, stderr.String())
	}
	if bytes.ContainsRune(stderr.Bytes(), 0x1b) {
		t.Errorf("escape codes off a terminal:\n%q", stderr.String())
	}
	if !strings.Contains(stderr.String(), "12 users in") || strings.Contains(stderr.String(), "provisioning ") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

func TestSummaryTable(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	u := newUI(uiOptions{LogLevel: "info", LogFormat: "text"}, &stderr, &redact.Set{})
	sum := report.NewSummary(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	rows := []report.Row{
		{Localpart: "alice", UserID: "@alice:example.org", Status: report.Created, Attempts: 1},
		{Localpart: "bob", UserID: "@bob:example.org", Status: report.Exists, Attempts: 1},
		{Localpart: "carol", UserID: "@carol:example.org", Status: report.Failed, Errcode: "M_EXCLUSIVE", Error: "User ID reserved by an application service", Attempts: 1},
		{Localpart: "dave", Status: report.Failed, Error: "Post \"http://x\": connection refused\x1b[31m", Attempts: 3},
		{Localpart: "erin", UserID: "@erin:example.org", Status: report.Failed, Errcode: "M_UNKNOWN", Error: "HMAC incorrect", Attempts: 1},
	}
	for _, r := range rows {
		sum.Add(r)
		u.row(r)
	}
	sum.Finished = sum.Started.Add(2 * time.Second)
	stderr.Reset() // the log lines of the failures
	u.summary(sum)
	u.close()
	want := `
5 users in 2s (2.5 users/s):
  created  1  new accounts; their passwords are in the handoff
  exists   1  already on the server; not touched
  failed   3  see below and the report

3 users failed:
  USER                ERRCODE      MESSAGE
  @carol:example.org  M_EXCLUSIVE  User ID reserved by an application service
                                   hint: the name is reserved by an application service (a bridge): choose another localpart
  dave                -            Post "http://x": connection refused\u001b[31m
                                   hint: a network or server error: run the same command again; done users are not touched
  @erin:example.org   M_UNKNOWN    HMAC incorrect
                                   hint: the shared secret is not the server's registration_shared_secret: check the file you gave provision
`
	if got := stderr.String(); got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}
}

func TestSummaryQuiet(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	u := newUI(uiOptions{LogLevel: "info", LogFormat: "text", Quiet: true}, &stderr, &redact.Set{})
	sum := report.NewSummary(time.Now())
	r := report.Row{Localpart: "alice", Status: report.Created, Attempts: 1}
	sum.Add(r)
	u.row(r)
	sum.Finished = sum.Started
	u.summary(sum)
	u.close()
	if stderr.Len() != 0 {
		t.Errorf("--quiet printed after a clean run:\n%s", stderr.String())
	}
}

func TestHint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		row  report.Row
		want string
	}{
		{report.Row{Errcode: "M_EXCLUSIVE"}, "application service"},
		{report.Row{Errcode: "M_USER_IN_USE"}, "another account"},
		{report.Row{Errcode: "M_INVALID_USERNAME"}, "a-z, 0-9"},
		{report.Row{Errcode: "M_WEAK_PASSWORD"}, "--password-length"},
		{report.Row{Errcode: "M_LIMIT_EXCEEDED"}, "lower --rate"},
		{report.Row{Errcode: "M_FORBIDDEN", Error: "bad mac"}, "registration_shared_secret"},
		{report.Row{Errcode: "M_UNKNOWN", Error: "unrecognised nonce"}, "nonce"},
		{report.Row{Errcode: "", Error: "HTTP 404"}, "Matrix Authentication Service"},
		{report.Row{Errcode: "M_BAD_JSON"}, "too long"},
		{report.Row{Errcode: "M_SOMETHING_NEW"}, ""},
	}
	for _, tc := range tests {
		got := hint(tc.row)
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("hint(%+v) = %q, want it to contain %q", tc.row, got, tc.want)
		}
	}
}

func TestPrintable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 10, "plain"},
		{"two\nlines", 20, "two lines"},
		{"\x1b[2J", 10, `\u001b[2J`},
		{"zero\u200bwidth", 20, `zero\u200bwidth`},
		{"ünïcödé", 20, "ünïcödé"},
		{"abcdef", 3, "abc…"},
	}
	for _, tc := range tests {
		if got := sanitize.Visible(tc.in, tc.max); got != tc.want {
			t.Errorf("printable(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}
