// Package slapdtest starts and stops a real OpenLDAP slapd for tests.
//
// slapd is installed by `scripts/slapd install` (Debian's slapd and ldap-utils); this
// package does not install it. The directory comes from `scripts/slapd config DIR N`,
// so the tests and a developer's `scripts/slapd start` run the same server: an mdb
// database in a temporary directory with N people and some groups (see the script for
// what is in it), TLS with a CA made for the test, listening on 127.0.0.1 only, and a
// read-only service account that, like a non-admin bind to Active Directory, gets at
// most 1,000 entries from a search that does not ask for pages. The process itself is
// launched from Go, in its own process group and with a parent-death signal, so that a
// test binary that panics, times out or is killed never leaves a server behind.
//
// A test calls Start, or Shared with Main in TestMain to share one server between the
// tests of a package. If slapd is not installed the test is skipped, unless
// PROVISION_REQUIRE_SLAPD=1 (as in `make test` and CI), where it fails: CI must never
// pass by skipping.
package slapdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The directory's fixed names (see scripts/slapd).
const (
	Suffix   = "dc=example,dc=org"
	PeopleDN = "ou=people," + Suffix
	GroupsDN = "ou=groups," + Suffix
	BadDN    = "ou=bad," + Suffix   // entries a roster must refuse
	EmptyDN  = "ou=empty," + Suffix // no entries below it
	BindDN   = "cn=reader," + Suffix
	// SizeLimit is the reader's limit on a search without paging.
	SizeLimit = 1000
)

// ErrNotInstalled is returned (wrapped) when slapd or its tools are missing.
var ErrNotInstalled = errors.New("slapd is not installed")

const (
	startTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
	portAttempts = 5
)

// Server is a running slapd.
type Server struct {
	LDAPURL      string // ldap://127.0.0.1:PORT (StartTLS available)
	LDAPSURL     string // ldaps://127.0.0.1:PORT
	BindPassword []byte // the reader's password
	PasswordFile string // the same in a file of mode 0600
	CAFile       string // PEM of the CA that signed the server's certificate
	Dir          string // config, database, certificates, slapd.log; removed by Stop
	People       int    // people in ou=people

	proc     *process
	stopOnce sync.Once
	stopErr  error
}

// Binary returns slapd's path: $PROVISION_SLAPD if set, else /usr/sbin/slapd. The
// error wraps ErrNotInstalled when slapd, slapadd, openssl or the memberof module is
// missing.
func Binary() (string, error) {
	bin := os.Getenv("PROVISION_SLAPD")
	if bin == "" {
		bin = "/usr/sbin/slapd"
	}
	need := []string{bin, filepath.Join(filepath.Dir(bin), "slapadd")}
	for _, p := range need {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			return "", fmt.Errorf("%w: no %s: run scripts/slapd install (as root)", ErrNotInstalled, p)
		}
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		return "", fmt.Errorf("%w: no openssl: run scripts/slapd install (as root)", ErrNotInstalled)
	}
	if _, err := os.Stat("/usr/lib/ldap/memberof.la"); err != nil {
		return "", fmt.Errorf("%w: no memberof module in /usr/lib/ldap: run scripts/slapd install (as root)", ErrNotInstalled)
	}
	return bin, nil
}

// Launch configures and starts a slapd with n people in a new temporary directory and
// returns once it accepts a bind. ctx bounds the start-up only.
func Launch(ctx context.Context, n int) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	script, err := scriptPath()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "slapdtest-")
	if err != nil {
		return nil, fmt.Errorf("start slapd: %w", err)
	}
	s, err := launch(ctx, bin, script, dir, n)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func launch(ctx context.Context, bin, script, dir string, n int) (*Server, error) {
	cmd := exec.CommandContext(ctx, "bash", script, "config", dir, strconv.Itoa(n))
	cmd.Env = append(os.Environ(), "PROVISION_SLAPD="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("configure slapd with %s: %w\n%s", script, err, bytes.TrimSpace(out))
	}
	pwFile := filepath.Join(dir, "reader.password")
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		return nil, fmt.Errorf("start slapd: %w", err)
	}
	s := &Server{BindPassword: bytes.TrimSpace(pw), PasswordFile: pwFile, CAFile: filepath.Join(dir, "ca.pem"), Dir: dir, People: n}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return nil, fmt.Errorf("start slapd: find free ports: %w", err)
		}
		s.LDAPURL = "ldap://127.0.0.1:" + strconv.Itoa(ports[0])
		s.LDAPSURL = "ldaps://127.0.0.1:" + strconv.Itoa(ports[1])
		p, err := start(bin, dir, s.LDAPURL+"/ "+s.LDAPSURL+"/")
		if err != nil {
			return nil, err
		}
		s.proc = p
		err = s.waitReady(ctx, ports)
		if err == nil {
			return s, nil
		}
		_ = p.stop()
		if !errors.Is(err, errPortTaken) || attempt == portAttempts {
			return nil, fmt.Errorf("start slapd: %w\nlast lines of %s:\n%s", err, p.log, tail(p.log, 30))
		}
	}
}

var errPortTaken = errors.New("port taken by another process")

// waitReady polls until both ports accept connections while our process runs. The
// ports cannot be another server's once ours is up and still running: slapd exits at
// once when it cannot bind one of its listeners.
func (s *Server) waitReady(ctx context.Context, ports []int) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.proc.done:
			if bytes.Contains(bytes.ToLower(readFile(s.proc.log)), []byte("already in use")) {
				return errPortTaken
			}
			return fmt.Errorf("slapd exited during start-up: %v", s.proc.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("slapd did not accept connections on %s and %s: %w", s.LDAPURL, s.LDAPSURL, ctx.Err())
		case <-tick.C:
		}
		ready := true
		for _, port := range ports {
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
			if err != nil {
				ready = false
				break
			}
			c.Close()
		}
		if !ready {
			continue
		}
		// A moment for slapd to fail on a listener taken by someone else.
		select {
		case <-s.proc.done:
			continue
		case <-time.After(50 * time.Millisecond):
		}
		return nil
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s) and removes its directory.
// It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		err := s.proc.stop()
		if rmErr := os.RemoveAll(s.Dir); rmErr != nil && err == nil {
			err = fmt.Errorf("stop slapd: %w", rmErr)
		}
		s.stopErr = err
	})
	return s.stopErr
}

// PID returns the server's process id.
func (s *Server) PID() int { return s.proc.cmd.Process.Pid }

// Start starts a server with n people for one test and stops it when the test and its
// subtests are done, even when they fail. If slapd is not installed it skips the test,
// or fails it when PROVISION_REQUIRE_SLAPD=1.
func Start(tb testing.TB, n int) *Server {
	tb.Helper()
	s, err := Launch(tb.Context(), n)
	if err != nil {
		skipOrFatal(tb, err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("last lines of %s:\n%s", s.proc.log, tail(s.proc.log, 40))
		}
		if err := s.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

func skipOrFatal(tb testing.TB, err error) {
	tb.Helper()
	if errors.Is(err, ErrNotInstalled) && os.Getenv("PROVISION_REQUIRE_SLAPD") != "1" {
		tb.Skip(err)
	}
	tb.Fatal(err)
}

var shared struct {
	sync.Mutex
	inMain bool
	n      int
	once   sync.Once
	srv    *Server
	err    error
}

// Main runs a package's tests with one server of n people shared by all of them: call
// it from TestMain, and get the server in a test with Shared. The server starts with
// the first call to Shared (a run whose tests all skip starts none) and stops after
// the last test, also when tests fail or panic (a panic kills the test binary, and
// the parent-death signal kills slapd with it). The shared directory is read-only
// for the tests.
func Main(m *testing.M, n int) {
	shared.Lock()
	shared.inMain, shared.n = true, n
	shared.Unlock()
	code := m.Run()
	shared.Lock()
	srv := shared.srv
	shared.Unlock()
	if srv != nil {
		if err := srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "slapdtest:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// Shared returns the package's shared server, started by the first call. It needs
// Main in TestMain; it skips or fails like Start.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.Lock()
	inMain, n := shared.inMain, shared.n
	shared.Unlock()
	if !inMain {
		tb.Fatal("slapdtest.Shared needs slapdtest.Main(m, n) in the package's TestMain")
	}
	shared.once.Do(func() {
		// Not the test's context: the server outlives the test that starts it.
		ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
		defer cancel()
		srv, err := Launch(ctx, n)
		shared.Lock()
		shared.srv, shared.err = srv, err
		shared.Unlock()
	})
	shared.Lock()
	srv, err := shared.srv, shared.err
	shared.Unlock()
	if err != nil {
		skipOrFatal(tb, err)
	}
	return srv
}

// process is a launched slapd.
type process struct {
	cmd     *exec.Cmd
	log     string
	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error         // cmd.Wait's error, set before done is closed
}

func start(bin, dir, urls string) (*process, error) {
	logPath := filepath.Join(dir, "slapd.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start slapd: %w", err)
	}
	defer logFile.Close() // the child has its own copy
	// -d 0: stay in the foreground (slapd forks away otherwise, out of our reach),
	// logging only what goes wrong.
	cmd := exec.Command(bin, "-d", "0", "-f", filepath.Join(dir, "slapd.conf"), "-h", urls)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that forked the child exits,
		// not the process, and Go may retire an idle thread: keep this goroutine on
		// its thread until the child is gone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start slapd: %w", err)
	}
	return p, nil
}

func (p *process) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := signalGroup(p.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop slapd: %w", err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	if err := signalGroup(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("stop slapd: %w", err)
	}
	select {
	case <-p.done:
		return fmt.Errorf("stop slapd: pid %d ignored SIGTERM for %s and was killed", p.cmd.Process.Pid, stopTimeout)
	case <-time.After(stopTimeout):
		return fmt.Errorf("stop slapd: pid %d survived SIGKILL", p.cmd.Process.Pid)
	}
}

// freePorts finds n distinct free ports; slapd binds them a moment later, and
// Launch tries again if another process took one in between.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// scriptPath finds scripts/slapd in the module this package belongs to.
func scriptPath() (string, error) {
	const rel = "scripts/slapd"
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find %s: %w", rel, err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		p := filepath.Join(dir, rel)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		p := filepath.Join(filepath.Dir(file), "..", "..", rel)
		if _, err := os.Stat(p); err == nil {
			return filepath.Clean(p), nil
		}
	}
	return "", fmt.Errorf("find %s: not in %s or above: run the tests from inside the provision repository", rel, wd)
}

func readFile(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

func tail(path string, n int) string {
	b := bytes.TrimRight(readFile(path), "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
