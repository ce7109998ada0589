package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/provision-matrix/provision/internal/dendritetest"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
)

// operatorEnv runs provision in-process the way an operator does from one directory,
// with one state directory for all of its runs.
type operatorEnv struct {
	t     *testing.T
	dir   string
	srv   *matrixtest.Server
	base  []string
	state string
	id    *age.X25519Identity
}

func newOperatorEnv(t *testing.T, o matrixtest.Options) *operatorEnv {
	const secret = "operator-paths-shared-secret"
	o.SharedSecret = secret
	e := &operatorEnv{t: t, dir: t.TempDir(), state: t.TempDir()}
	e.srv = matrixtest.NewServer(t, o)
	id, _ := newIdentity(t, e.dir)
	e.id = id
	write(t, e.path("secret"), secret+"\n")
	e.base = []string{"--homeserver", e.srv.URL(), "--shared-secret-file", e.path("secret"),
		"--recipient", id.Recipient().String(), "--state-dir", e.state, "--rate", "0", "--concurrency", "4",
		"--retry-budget", "1s"}
	return e
}

func (e *operatorEnv) path(name string) string { return filepath.Join(e.dir, name) }

// run runs provision with ctx; it returns the exit code and stderr.
func (e *operatorEnv) run(ctx context.Context, args ...string) (int, string) {
	e.t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(ctx, append(append([]string{}, e.base...), args...), strings.NewReader(""), &stdout, &stderr)
	return exitCode(err, &stderr), stderr.String()
}

// handedOff decrypts every age file the runs left in the directory, as the operator
// would, and returns each user's password, failing on a user handed off twice.
func (e *operatorEnv) handedOff() map[string]string {
	e.t.Helper()
	files, _ := filepath.Glob(e.path("*.age"))
	got := map[string]string{}
	for _, f := range files {
		for _, row := range decryptCredentials(e.t, f, e.path("operator-key.txt"), e.id) {
			if prev, dup := got[row[0]]; dup {
				e.t.Errorf("%s is handed off twice (%s), the second time in %s", row[0], map[bool]string{true: "same password", false: "two passwords"}[prev == row[1]], filepath.Base(f))
			}
			got[row[0]] = row[1]
		}
	}
	return got
}

// converged checks what the operator cares about in the end: every roster user has
// exactly one account, handed off exactly once, with a password that logs in.
func (e *operatorEnv) converged(users []string) {
	e.t.Helper()
	got := e.handedOff()
	if n := len(e.srv.Users()); n != len(users) {
		e.t.Errorf("the server has %d accounts, want %d", n, len(users))
	}
	for _, u := range users {
		pw, ok := got[e.srv.UserID(u)]
		switch {
		case !ok:
			e.t.Errorf("%s: no password handed off", u)
		case !e.srv.CheckPassword(u, pw):
			e.t.Errorf("%s: the handed-off password does not log in", u)
		}
	}
	if len(got) != len(users) {
		e.t.Errorf("%d users handed off, want %d", len(got), len(users))
	}
}

func rosterOf(n int) (string, []string) {
	var b strings.Builder
	b.WriteString("localpart\n")
	var users []string
	for i := range n {
		u := fmt.Sprintf("op%03d", i)
		users = append(users, u)
		b.WriteString(u + "\n")
	}
	return b.String(), users
}

// TestOperatorPaths walks the sequences of issue 11 as an operator would, against one
// server and one directory: Ctrl-C and the same command again, a rerun under another
// report name, --force, answers lost so that some outcomes are unknown, --fresh
// refused while the journal owes passwords, recover, and --fresh once nothing is owed.
// At the end every age file the runs left is decrypted: every roster user exactly
// once, every password logs in.
func TestOperatorPaths(t *testing.T) {
	lostAnswer := regexp.MustCompile(`"username":"op03[0-2]"`)
	var posts atomic.Int64
	var dropNew atomic.Bool
	var cancelAt atomic.Int64
	var cancel atomic.Pointer[context.CancelFunc]
	register := matrixtest.Route(http.MethodPost, "/_synapse/admin/v1/register")
	e := newOperatorEnv(t, matrixtest.Options{Faults: func(r *http.Request) matrixtest.Fault {
		if !register(r) {
			return matrixtest.Fault{}
		}
		n := posts.Add(1)
		if n == cancelAt.Load() {
			if c := cancel.Load(); c != nil {
				(*c)() // Ctrl-C while this request is in flight
			}
		}
		if dropNew.Load() {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if lostAnswer.Match(body) {
				return matrixtest.Fault{DropResponse: true} // created, answer lost
			}
		}
		return matrixtest.Fault{}
	}})
	text, users := rosterOf(30)
	write(t, e.path("team.csv"), text)
	args := []string{"--credentials", e.path("creds.age"), "--report", e.path("report.csv"), e.path("team.csv")}

	// 1. Ctrl-C during the first run: exit 130, what was created is handed off.
	ctx, c := context.WithCancel(context.Background())
	cancel.Store(&c)
	cancelAt.Store(10)
	if code, stderr := e.run(ctx, args...); code != ExitInterrupted {
		t.Fatalf("interrupted run: exit %d, want %d:\n%s", code, ExitInterrupted, stderr)
	}
	cancel.Store(nil)

	// 2. The same command again finishes the job (it used to exit 2 on creds.age).
	code, stderr := e.run(context.Background(), args...)
	if code != ExitOK {
		t.Fatalf("the same command again: exit %d:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, e.path("creds-2.age")) {
		t.Errorf("the rerun does not say where the new passwords are:\n%s", stderr)
	}

	// 3. Another report name, then --force: the journal is the server's, so everyone
	// is known and nothing is handed off twice or destroyed.
	for _, extra := range [][]string{{"--report", e.path("other.csv")}, {"--force"}} {
		if code, stderr := e.run(context.Background(), append(extra, args...)...); code != ExitOK {
			t.Fatalf("%v: exit %d:\n%s", extra, code, stderr)
		}
	}

	// 4. Ten more people; the server creates three of them but every answer about them
	// is lost, so the run ends with their outcome unknown (their passwords are live).
	text, users = rosterOf(40)
	write(t, e.path("team.csv"), text)
	dropNew.Store(true)
	code, stderr = e.run(context.Background(), "--concurrency", "1", "--credentials", e.path("creds.age"), "--report", e.path("report.csv"), e.path("team.csv"))
	if code != ExitFailed {
		t.Fatalf("run with lost answers: exit %d, want %d:\n%s", code, ExitFailed, stderr)
	}
	dropNew.Store(false)

	// 5. --fresh must not set aside a journal whose passwords exist nowhere else.
	code, stderr = e.run(context.Background(), append([]string{"--fresh"}, args...)...)
	if code != ExitUsage || !strings.Contains(stderr, "provision recover") {
		t.Fatalf("--fresh with passwords owed: exit %d, want %d with a hint naming recover:\n%s", code, ExitUsage, stderr)
	}

	// 6. recover lists the users whose outcome is unknown and sends nothing.
	before := e.srv.Counts().Registrations
	var rout, rerr bytes.Buffer
	err := run(context.Background(), append(append([]string{"recover"}, e.base...), "--credentials", e.path("recovered.age")), strings.NewReader(""), &rout, &rerr)
	if code := exitCode(err, &rerr); code != ExitOK {
		t.Fatalf("recover: exit %d:\n%s", code, rerr.String())
	}
	for _, u := range []string{"op030", "op031", "op032"} {
		if !strings.Contains(rout.String(), "unknown "+e.srv.UserID(u)+"\n") {
			t.Errorf("recover does not list %s as unknown:\n%s", u, rout.String())
		}
	}
	if e.srv.Counts().Registrations != before {
		t.Error("recover sent a registration")
	}

	// 7. The same command settles them (by logging in), and then --fresh is allowed.
	if code, stderr := e.run(context.Background(), args...); code != ExitOK {
		t.Fatalf("settling run: exit %d:\n%s", code, stderr)
	}
	if code, stderr := e.run(context.Background(), append([]string{"--fresh"}, args...)...); code != ExitOK {
		t.Fatalf("--fresh once nothing is owed: exit %d:\n%s", code, stderr)
	}
	e.converged(users)

	// No run left a temporary file behind.
	if tmp, _ := filepath.Glob(e.path(".*.tmp")); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	if _, err := os.Stat(e.path("recovered.age")); err == nil {
		rows := decryptCredentials(t, e.path("recovered.age"), e.path("operator-key.txt"), e.id)
		t.Logf("recover wrote %d passwords", len(rows))
	}
}

// TestOperatorPathsDendrite walks the operator's ordinary paths against the real
// homeserver: Ctrl-C in the middle of a run, the same command again (its credentials
// file exists: the new passwords go beside it), a rerun under another report name,
// --force. At the end every age file is decrypted: every roster user exactly once,
// and every password logs in on Dendrite.
func TestOperatorPathsDendrite(t *testing.T) {
	srv := dendritetest.StartForTest(t)
	dir, state := t.TempDir(), t.TempDir()
	id, keyFile := newIdentity(t, dir)
	text, users := rosterOf(40)
	write(t, filepath.Join(dir, "team.csv"), text)
	base := []string{"--homeserver", srv.URL, "--shared-secret-file", srv.SharedSecretFile,
		"--recipient", id.Recipient().String(), "--state-dir", state, "--concurrency", "2", "--rate", "0",
		"--credentials", filepath.Join(dir, "creds.age")}
	run1 := func(ctx context.Context, extra ...string) (int, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args := append(append(append([]string{}, base...), extra...), filepath.Join(dir, "team.csv"))
		err := run(ctx, args, strings.NewReader(""), &stdout, &stderr)
		return exitCode(err, &stderr), stderr.String()
	}
	client, err := matrix.NewClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}

	// 1. Ctrl-C once the tenth user exists.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		for ctx.Err() == nil {
			if av, err := client.UsernameAvailable(ctx, users[9]); err == nil && av == matrix.Taken {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	if code, stderr := run1(ctx, "--report", filepath.Join(dir, "r1.csv")); code != ExitInterrupted && code != ExitOK {
		t.Fatalf("interrupted run: exit %d:\n%s", code, stderr)
	}
	cancel()
	// 2. The same command again, 3. another report name, 4. --force.
	for i, extra := range [][]string{{"--report", filepath.Join(dir, "r1.csv")}, {"--report", filepath.Join(dir, "r2.csv")}, {"--report", filepath.Join(dir, "r1.csv"), "--force"}} {
		if code, stderr := run1(context.Background(), extra...); code != ExitOK {
			t.Fatalf("rerun %d %v: exit %d:\n%s", i+1, extra, code, stderr)
		}
	}

	files, _ := filepath.Glob(filepath.Join(dir, "*.age"))
	got := map[string]string{}
	for _, f := range files {
		for _, r := range decryptCredentials(t, f, keyFile, id) {
			if _, dup := got[r[0]]; dup {
				t.Errorf("%s is handed off twice (again in %s)", r[0], filepath.Base(f))
			}
			got[r[0]] = r[1]
		}
	}
	if len(got) != len(users) {
		t.Errorf("%d users handed off, want %d", len(got), len(users))
	}
	for _, u := range users {
		userID := "@" + u + ":" + srv.ServerName
		pw, ok := got[userID]
		if !ok {
			t.Errorf("%s: no password handed off", userID)
			continue
		}
		tok, err := client.Login(context.Background(), userID, pw)
		if err != nil {
			t.Errorf("%s: the handed-off password does not log in: %v", userID, err)
			continue
		}
		_ = client.Logout(context.Background(), tok)
	}
}
