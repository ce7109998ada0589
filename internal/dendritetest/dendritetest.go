// Package dendritetest starts and stops a real Dendrite v0.13.8 for tests.
//
// Dendrite is installed by `scripts/dendrite install`; this package does not build it.
// The configuration comes from `scripts/dendrite config`, so the tests, `make demo`
// and a developer's `scripts/dendrite start` all run the same server: SQLite in a
// temporary directory, HTTP on 127.0.0.1 only, federation and every outbound lookup
// off, public registration off, and a random shared secret for shared-secret
// registration. The process itself is launched from Go, in its own process group and
// with a parent-death signal, so that a test binary that panics, times out or is
// killed never leaves a server behind.
//
// A test that needs a server calls StartForTest. If Dendrite is not installed the test
// is skipped, unless PROVISION_REQUIRE_DENDRITE=1 (as in `make test` and CI), where it
// fails: CI must never pass by skipping.
package dendritetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
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

// Version is the Dendrite release the project tests against.
const Version = "v0.13.8"

// ServerName is the server name of every server started here: user IDs are
// @localpart:localhost.
const ServerName = "localhost"

// DefaultBcryptCost is the cost used when Options.BcryptCost is 0: bcrypt's minimum,
// so that a registration takes milliseconds instead of tens of them.
const DefaultBcryptCost = 4

// ErrNotInstalled is returned (wrapped) when the Dendrite binaries are missing.
var ErrNotInstalled = errors.New("dendrite is not installed")

const (
	startTimeout = 60 * time.Second // until the server must answer
	stopTimeout  = 10 * time.Second // between SIGTERM and SIGKILL
	portAttempts = 5
)

// Server is a running Dendrite.
type Server struct {
	URL              string // http://127.0.0.1:PORT
	ServerName       string
	Dir              string // config, signing key, databases, dendrite.log; removed by Stop
	SharedSecret     []byte // the registration shared secret, trimmed
	SharedSecretFile string // the same secret in a file of mode 0600

	proc     *process
	stopOnce sync.Once
	stopErr  error
}

// Options tune Start.
type Options struct {
	// BcryptCost is user_api.bcrypt_cost, 4 to 31; 0 means DefaultBcryptCost. Dendrite's
	// own default is 10.
	BcryptCost int
}

// Binary returns the directory holding dendrite, generate-config and generate-keys,
// by the same rule as scripts/dendrite: $PROVISION_DENDRITE_BIN if set, else
// ${PROVISION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/provision}/dendrite-v0.13.8/bin.
// The error wraps ErrNotInstalled when the binaries are not there.
func Binary() (dir string, err error) {
	dir, err = binDir()
	if err != nil {
		return "", err
	}
	for _, name := range []string{"dendrite", "generate-config", "generate-keys"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return "", fmt.Errorf("%w: no %s in %s: run scripts/dendrite install", ErrNotInstalled, name, dir)
		}
	}
	return dir, nil
}

func binDir() (string, error) {
	if dir := os.Getenv("PROVISION_DENDRITE_BIN"); dir != "" {
		return dir, nil
	}
	cache := os.Getenv("PROVISION_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("find dendrite: %w: set PROVISION_DENDRITE_BIN or PROVISION_CACHE", err)
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "provision")
	}
	return filepath.Join(cache, "dendrite-"+Version, "bin"), nil
}

// Start configures and starts a Dendrite in a new temporary directory and returns
// once it answers GET /_matrix/client/versions. ctx bounds the start-up only; the
// server runs until Stop, or until the test binary exits.
func Start(ctx context.Context, o Options) (*Server, error) {
	cost := o.BcryptCost
	if cost == 0 {
		cost = DefaultBcryptCost
	}
	if cost < 4 || cost > 31 {
		return nil, fmt.Errorf("start dendrite: bcrypt cost %d: use 4 to 31", cost)
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	script, err := scriptPath()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "dendritetest-")
	if err != nil {
		return nil, fmt.Errorf("start dendrite: %w", err)
	}
	s, err := start(ctx, bin, script, dir, cost)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func start(ctx context.Context, bin, script, dir string, cost int) (*Server, error) {
	// The script writes the config, the signing key and the secret; it prints no secret,
	// so its output can go into an error.
	cmd := exec.CommandContext(ctx, "bash", script, "config", dir, "--bcrypt-cost", strconv.Itoa(cost))
	cmd.Env = append(os.Environ(), "PROVISION_DENDRITE_BIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("configure dendrite with %s: %w\n%s", script, err, bytes.TrimSpace(out))
	}
	secretFile := filepath.Join(dir, "shared_secret")
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		return nil, fmt.Errorf("start dendrite: %w", err)
	}
	s := &Server{
		ServerName:       ServerName,
		Dir:              dir,
		SharedSecret:     bytes.TrimSpace(secret),
		SharedSecretFile: secretFile,
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("start dendrite: find a free port: %w", err)
		}
		p, err := launch(filepath.Join(bin, "dendrite"), dir, port)
		if err != nil {
			return nil, err
		}
		s.proc = p
		s.URL = "http://127.0.0.1:" + strconv.Itoa(port)
		err = s.waitReady(ctx, port)
		if err == nil {
			return s, nil
		}
		_ = p.stop()
		if !errors.Is(err, errPortTaken) || attempt == portAttempts {
			return nil, fmt.Errorf("start dendrite: %w\nlast lines of %s:\n%s", err, p.log, tail(p.log, 30))
		}
	}
}

var errPortTaken = errors.New("port taken by another process")

// waitReady polls until our process answers on port, it exits, or ctx ends.
func (s *Server) waitReady(ctx context.Context, port int) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.proc.done:
			if bytes.Contains(readFile(s.proc.log), []byte("address already in use")) {
				return errPortTaken
			}
			return fmt.Errorf("dendrite exited during start-up: %v", s.proc.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("dendrite did not answer on %s: %w", s.URL, ctx.Err())
		case <-tick.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/_matrix/client/versions", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		// Another process may have taken the port between freePort and Dendrite's
		// bind; then what answered is not ours, and ours is about to exit.
		owned, err := listens(s.proc.cmd.Process.Pid, port)
		if err != nil {
			return err
		}
		if !owned {
			return errPortTaken
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
			err = fmt.Errorf("stop dendrite: %w", rmErr)
		}
		s.stopErr = err
	})
	return s.stopErr
}

// PID returns the server's process id.
func (s *Server) PID() int { return s.proc.cmd.Process.Pid }

// LogTail returns the last n lines of the server's log.
func (s *Server) LogTail(n int) string { return tail(s.proc.log, n) }

// StartForTest starts a server with DefaultBcryptCost and stops it when the test and
// its subtests are done. If Dendrite is not installed it skips the test, or fails it
// when PROVISION_REQUIRE_DENDRITE=1. When the test fails, the log's tail goes to the
// test log.
func StartForTest(tb testing.TB) *Server {
	tb.Helper()
	s, err := Start(tb.Context(), Options{})
	if err != nil {
		skipOrFatal(tb, err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("last lines of %s:\n%s", filepath.Join(s.Dir, "dendrite.log"), s.LogTail(40))
		}
		if err := s.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

func skipOrFatal(tb testing.TB, err error) {
	tb.Helper()
	if errors.Is(err, ErrNotInstalled) && os.Getenv("PROVISION_REQUIRE_DENDRITE") != "1" {
		tb.Skip(err)
	}
	tb.Fatal(err)
}

var shared struct {
	sync.Mutex
	inMain bool
	opts   Options
	once   sync.Once
	srv    *Server
	err    error
}

// Main runs a package's tests with one server shared by all of them: call it from
// TestMain, and get the server in a test with Shared. The server starts with the
// first call to Shared (so a run whose tests all skip starts none) and stops after
// the last test. Tests that share it must not collide: give each its own localparts.
func Main(m *testing.M, o Options) {
	shared.Lock()
	shared.inMain, shared.opts = true, o
	shared.Unlock()
	code := m.Run()
	shared.Lock()
	srv := shared.srv
	shared.Unlock()
	if srv != nil {
		if err := srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "dendritetest:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// Shared returns the package's shared server, started by the first call. It needs
// Main in TestMain; it skips or fails like StartForTest.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.Lock()
	inMain, o := shared.inMain, shared.opts
	shared.Unlock()
	if !inMain {
		tb.Fatal("dendritetest.Shared needs dendritetest.Main(m, opts) in the package's TestMain")
	}
	shared.once.Do(func() {
		// Not the test's context: the server outlives the test that starts it.
		ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
		defer cancel()
		srv, err := Start(ctx, o)
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

// process is a launched dendrite.
type process struct {
	cmd     *exec.Cmd
	log     string
	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error         // cmd.Wait's error, set before done is closed
}

func launch(binary, dir string, port int) (*process, error) {
	logPath := filepath.Join(dir, "dendrite.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start dendrite: %w", err)
	}
	defer logFile.Close() // the child has its own copy of the descriptor
	cmd := exec.Command(binary,
		"--config", filepath.Join(dir, "dendrite.yaml"),
		"--http-bind-address", "127.0.0.1:"+strconv.Itoa(port))
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that forked the child exits,
		// not the process, and Go may retire an idle thread: keep this goroutine on its
		// thread until the child is gone.
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
		return nil, fmt.Errorf("start dendrite: %w", err)
	}
	return p, nil
}

// stop sends SIGTERM to the process group, SIGKILL after stopTimeout, and waits
// until the process is reaped.
func (p *process) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := signalGroup(p.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop dendrite: %w", err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	if err := signalGroup(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("stop dendrite: %w", err)
	}
	select {
	case <-p.done:
		return fmt.Errorf("stop dendrite: pid %d ignored SIGTERM for %s and was killed", p.cmd.Process.Pid, stopTimeout)
	case <-time.After(stopTimeout):
		return fmt.Errorf("stop dendrite: pid %d survived SIGKILL", p.cmd.Process.Pid)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// scriptPath finds scripts/dendrite in the module this package belongs to: tests run
// with the package directory as working directory, so walk up from there; fall back
// on where this file was compiled.
func scriptPath() (string, error) {
	const rel = "scripts/dendrite"
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
