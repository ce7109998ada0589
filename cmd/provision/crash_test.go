//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/dendritetest"
	"github.com/provision-matrix/provision/internal/handoff"
	"github.com/provision-matrix/provision/internal/matrix"
)

// buildProvision compiles the provision command into a temporary directory: the tests
// that signal or kill provision need it as a process of its own.
func buildProvision(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "provision")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// syncBuffer is a bytes.Buffer that the process's output goroutine and the test can
// use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running provision.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{} // closed once the process has exited and been reaped
	state          *os.ProcessState
}

// startProvision starts bin with args in dir. The process gets none of the test's
// PROVISION_* variables, only env; it is killed when the test ends, and also if the
// test binary itself dies (parent-death signal).
func startProvision(t *testing.T, bin, dir string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdin = strings.NewReader("")
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PROVISION_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	// Each test keeps its journals in a state directory of its own (see stateDir).
	p.cmd.Env = append(p.cmd.Env, "XDG_STATE_HOME="+filepath.Join(dir, ".state"))
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process to exit, at most d, and returns its exit code (-1 when a
// signal killed it).
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("provision did not exit within %s; killed it. stderr:\n%s", d, p.stderr.String())
	}
	return p.state.ExitCode()
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor polls until cond holds, at most d; the message says what was awaited.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// credential is one password handed off, and where.
type credential struct {
	password, source string
}

// readWelcome decrypts a welcome file with its user's identity and returns the user ID
// and password it announces.
func readWelcome(t *testing.T, path string, id age.Identity) (userID, password string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := age.Decrypt(f, id)
	if err != nil {
		t.Fatalf("%s does not decrypt with its user's key: %v", path, err)
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "User ID:"); ok {
			userID = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "Password:"); ok {
			password = strings.TrimSpace(v)
		}
	}
	if userID == "" || password == "" {
		t.Fatalf("%s: no user ID or password in the welcome note", path)
	}
	return userID, password
}

// TestCrashAndResumeOnDendrite kills provision with SIGKILL at random instants during a
// run of 250 users against a real Dendrite, several times, then runs the same command
// to completion, and checks what an operator would: every roster user has an account;
// every created user's password was handed off exactly once (operator file or the
// user's own welcome file) and logs in; the users who existed before keep their
// passwords; nothing left behind holds a password in the clear.
func TestCrashAndResumeOnDendrite(t *testing.T) {
	if testing.Short() {
		t.Skip("kills provision several times against a real Dendrite")
	}
	srv := dendritetest.StartForTest(t)
	bin := buildProvision(t)
	dir := t.TempDir()
	opID, keyFile := newIdentity(t, dir)

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PROVISION_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PROVISION_CRASH_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("kill instants drawn with seed %d (PROVISION_CRASH_SEED=%d replays them)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	client, err := matrix.NewClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Users who exist before provision runs: their passwords must survive every run.
	preexisting := map[string]string{}
	for i := range 5 {
		lp := fmt.Sprintf("crash-old%d", i)
		pw := fmt.Sprintf("their-own-password-%d", i)
		if _, err := client.RegisterSharedSecret(ctx, srv.SharedSecret, matrix.Registration{Localpart: lp, Password: pw}); err != nil {
			t.Fatal(err)
		}
		preexisting[lp] = pw
	}

	// 250 users; every tenth gets its password in a welcome file of its own.
	const n = 250
	userKeys := map[string]*age.X25519Identity{}
	var roster strings.Builder
	roster.WriteString("localpart,displayname,recipient\n")
	var localparts []string
	for i := range n {
		lp := fmt.Sprintf("crash-user%03d", i)
		rcpt := ""
		if i%10 == 3 {
			id, err := age.GenerateX25519Identity()
			if err != nil {
				t.Fatal(err)
			}
			userKeys[lp] = id
			rcpt = id.Recipient().String()
		}
		fmt.Fprintf(&roster, "%s,Crash User %d,%s\n", lp, i, rcpt)
		localparts = append(localparts, lp)
		if i == n/2 {
			for lp := range preexisting {
				fmt.Fprintf(&roster, "%s,Already There,\n", lp)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "team.csv"), []byte(roster.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// The same command every time, but for the credentials file: a killed run never
	// commits its own, and a run killed just after committing must not make the next
	// one refuse to overwrite it.
	args := func(run int) []string {
		return []string{"--homeserver", srv.URL, "--shared-secret-file", srv.SharedSecretFile,
			"--recipient", opID.Recipient().String(), "--concurrency", "4", "--rate", "40",
			"--credentials", fmt.Sprintf("credentials-run%d.age", run), "--report", "report.csv",
			"--handoff-dir", "handoff", "team.csv"}
	}

	const kills = 5
	midRun := 0
	for run := 1; run <= kills; run++ {
		p := startProvision(t, bin, dir, nil, args(run)...)
		after := 200*time.Millisecond + time.Duration(rng.Int64N(int64(1300*time.Millisecond)))
		select {
		case <-p.done:
		case <-time.After(after):
			// An error here means the process has just exited by itself; see below.
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
		if ws, ok := p.state.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			// Unlikely at --rate 40, but a run may finish before its kill.
			if code := p.state.ExitCode(); code != 0 {
				t.Fatalf("run %d exited %d before its kill at %s:\n%s", run, code, after, p.stderr.String())
			}
			t.Logf("run %d finished before its kill at %s", run, after)
			break
		}
		have := 0
		for _, lp := range localparts {
			if av, err := client.UsernameAvailable(ctx, lp); err == nil && av == matrix.Taken {
				have++
			}
		}
		t.Logf("run %d: killed after %s; %d of %d roster users have an account", run, after, have, n)
		if have > 0 && have < n {
			midRun++
		}
	}
	if midRun < 3 {
		t.Fatalf("only %d of %d kills landed while users were being created: the test proved little", midRun, kills)
	}

	final := startProvision(t, bin, dir, nil, args(kills+1)...)
	if code := final.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("the run after the crashes exited %d:\n%s", code, final.stderr.String())
	}

	// The report of the final run is complete: every roster user, none failed.
	rep := readReport(t, filepath.Join(dir, "report.csv"))
	if len(rep) != n+len(preexisting) {
		t.Errorf("final report has %d rows, want %d", len(rep), n+len(preexisting))
	}
	for lp, row := range rep {
		want := "created"
		if _, old := preexisting[lp]; old {
			want = "exists"
		}
		// A user created and handed off by a killed run that got as far as recording
		// the handoff is "exists" in later reports; any other status is a loss.
		if row[2] != want && !(want == "created" && row[2] == "exists") {
			t.Errorf("final report: %s is %q (%s), want %s", lp, row[2], row[4], want)
		}
	}

	// Every password handed off, by every run: operator files and welcome files.
	handed := map[string][]credential{}
	matches, err := filepath.Glob(filepath.Join(dir, "credentials-run*.age"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range matches {
		for _, r := range decryptCredentials(t, path, keyFile, opID) {
			handed[r[0]] = append(handed[r[0]], credential{r[1], filepath.Base(path)})
		}
	}
	for lp, id := range userKeys {
		name, err := handoff.WelcomeFileName(lp)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "handoff", name)
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s: no welcome file: %v", lp, err)
			continue
		}
		userID, pw := readWelcome(t, path, id)
		handed[userID] = append(handed[userID], credential{pw, "handoff/" + name})
	}

	var passwords []string
	for _, lp := range localparts {
		userID := "@" + lp + ":" + srv.ServerName
		creds := handed[userID]
		if len(creds) != 1 {
			t.Errorf("%s was handed off %d times (%v), want exactly once", userID, len(creds), creds)
			if len(creds) == 0 {
				continue
			}
		}
		_, own := userKeys[lp]
		if own != strings.HasPrefix(creds[0].source, "handoff/") {
			t.Errorf("%s was handed off in %s; users with a recipient get a welcome file, the others the operator's file", userID, creds[0].source)
		}
		passwords = append(passwords, creds[0].password)
		tok, err := client.Login(ctx, userID, creds[0].password)
		if err != nil {
			t.Errorf("%s: the password handed off in %s does not log in: %v", userID, creds[0].source, err)
			continue
		}
		_ = client.Logout(ctx, tok)
		delete(handed, userID)
	}
	for userID, creds := range handed {
		t.Errorf("%s was handed off (%v) but is not a roster user created by provision", userID, creds)
	}

	// Accounts: every roster user has one, and those that existed keep their password.
	for _, lp := range append(localparts, "crash-old0") {
		av, err := client.UsernameAvailable(ctx, lp)
		if err != nil || av != matrix.Taken {
			t.Errorf("%s: availability %v, %v; want an account", lp, av, err)
		}
	}
	for lp, pw := range preexisting {
		tok, err := client.Login(ctx, "@"+lp+":"+srv.ServerName, pw)
		if err != nil {
			t.Errorf("%s existed before provision ran and its password no longer works: %v", lp, err)
			continue
		}
		_ = client.Logout(ctx, tok)
	}

	// What the killed runs left behind (temporary files, the journal, the report) holds
	// no password in the clear. Committed .age files are encrypted; temporary ones end
	// in .tmp and are checked like everything else.
	var leftovers []string
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".age") {
			return err
		}
		if strings.HasSuffix(path, ".tmp") {
			rel, _ := filepath.Rel(dir, path)
			leftovers = append(leftovers, rel)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, pw := range passwords {
			if bytes.Contains(data, []byte(pw)) {
				t.Errorf("%s holds a password in the clear", path)
				break
			}
		}
		if bytes.Contains(data, srv.SharedSecret) {
			t.Errorf("%s holds the shared secret", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("temporary files the killed runs left behind: %v", leftovers)
	if t.Failed() {
		t.Logf("final run's stderr:\n%s", final.stderr.String())
	}
}
