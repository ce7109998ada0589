//go:build linux

package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/matrixtest"
)

// gatedServer is a fake Synapse that lets the first `free` registrations through and
// holds every later one inside the server until release: the requests are in flight,
// the client waiting for its answer. Once released, a held request is carried out
// whether or not its client is still there, as a real server would.
type gatedServer struct {
	*matrixtest.Server
	held     atomic.Int32
	posts    atomic.Int32
	holding  atomic.Bool
	gate     chan struct{}
	openOnce sync.Once
}

const signalSecret = "signal-test-shared-secret"

func newGatedServer(t *testing.T, free int32) *gatedServer {
	t.Helper()
	g := &gatedServer{gate: make(chan struct{})}
	g.holding.Store(true)
	register := matrixtest.Route(http.MethodPost, "/_synapse/admin/v1/register")
	g.Server = matrixtest.NewServer(t, matrixtest.Options{SharedSecret: signalSecret, Faults: func(r *http.Request) matrixtest.Fault {
		if !register(r) {
			return matrixtest.Fault{}
		}
		// VerifySharedSecret's POST (empty username) is not a registration to hold.
		if n := g.posts.Add(1); n > free+1 && g.holding.Load() {
			g.held.Add(1)
			<-g.gate
		}
		return matrixtest.Fault{}
	}})
	// Registered after the server's own clean-up, so it runs first: the server's
	// Close waits for the handlers that the gate holds.
	t.Cleanup(g.open)
	return g
}

// open lets every held request, and every later one, through.
func (g *gatedServer) open() {
	g.openOnce.Do(func() {
		g.holding.Store(false)
		close(g.gate)
	})
}

// signalFixture is a roster, a key and a secret file for the signal tests.
type signalFixture struct {
	dir, keyFile string
	id           *age.X25519Identity
	args         []string
	srv          *gatedServer
}

func newSignalFixture(t *testing.T, users int, free int32) *signalFixture {
	t.Helper()
	f := &signalFixture{dir: t.TempDir(), srv: newGatedServer(t, free)}
	f.id, f.keyFile = newIdentity(t, f.dir)
	var roster strings.Builder
	roster.WriteString("localpart\n")
	for i := range users {
		fmt.Fprintf(&roster, "sig%02d\n", i)
	}
	write(t, filepath.Join(f.dir, "team.csv"), roster.String())
	write(t, filepath.Join(f.dir, "secret"), signalSecret+"\n")
	f.args = []string{"--homeserver", f.srv.URL(), "--shared-secret-file", "secret",
		"--recipient", f.id.Recipient().String(), "--concurrency", "4", "--rate", "0",
		"--credentials", "credentials.age", "--report", "report.csv", "team.csv"}
	return f
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkHandedOff decrypts the credentials file and checks that it holds exactly the
// users the server has, each with a password that logs in.
func (f *signalFixture) checkHandedOff(t *testing.T) map[string]bool {
	t.Helper()
	rows := decryptCredentials(t, filepath.Join(f.dir, "credentials.age"), f.keyFile, f.id)
	got := map[string]bool{}
	for _, r := range rows {
		if got[r[0]] {
			t.Errorf("%s is twice in the credentials file", r[0])
		}
		got[r[0]] = true
		if !f.srv.CheckPassword(strings.TrimSuffix(strings.TrimPrefix(r[0], "@"), ":"+f.srv.ServerName()), r[1]) {
			t.Errorf("%s: the handed-off password does not log in", r[0])
		}
	}
	for _, u := range f.srv.Users() {
		if !got[u.UserID] {
			t.Errorf("%s has an account but is not in the credentials file: its password is lost", u.UserID)
		}
	}
	return got
}

// TestFirstSIGINTFinishesInFlight: Ctrl-C once lets the requests already sent finish,
// writes the report and the credentials of everyone created so far, and exits 130.
func TestFirstSIGINTFinishesInFlight(t *testing.T) {
	bin := buildProvision(t)
	f := newSignalFixture(t, 40, 10)
	p := startProvision(t, bin, f.dir, nil, f.args...)
	waitFor(t, 30*time.Second, "4 registrations held in the server", func() bool { return f.srv.held.Load() == 4 || p.exited() })
	if p.exited() {
		t.Fatalf("provision exited %d early:\n%s", p.state.ExitCode(), p.stderr.String())
	}

	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "provision to acknowledge the signal", func() bool {
		return strings.Contains(p.stderr.String(), "finishing the requests already sent")
	})
	if p.exited() {
		t.Fatalf("provision exited (%d) while 4 requests were still in flight:\n%s", p.state.ExitCode(), p.stderr.String())
	}
	f.srv.open()
	if code := p.wait(t, 30*time.Second); code != ExitInterrupted {
		t.Fatalf("exit %d, want %d:\n%s", code, ExitInterrupted, p.stderr.String())
	}

	created := len(f.srv.Users())
	if created < 14 || created == 40 {
		t.Errorf("the server has %d accounts: want the 10 before the signal, the 4 in flight, and not everyone", created)
	}
	got := f.checkHandedOff(t)
	rep := readReport(t, filepath.Join(f.dir, "report.csv"))
	if len(rep) != 40 {
		t.Errorf("the report has %d rows, want one for each of the 40 users", len(rep))
	}
	statuses := map[string]int{}
	for lp, row := range rep {
		statuses[row[2]]++
		if row[2] == "created" && !got["@"+lp+":"+f.srv.ServerName()] {
			t.Errorf("%s is reported created but not handed off", lp)
		}
	}
	if statuses["created"] != created || statuses["created"]+statuses["skipped"] != 40 {
		t.Errorf("report statuses %v: want the %d created, the rest skipped", statuses, created)
	}
	if !strings.Contains(p.stderr.String(), "credentials.age") {
		t.Errorf("stderr does not say where the credentials went:\n%s", p.stderr.String())
	}
}

// TestSecondSIGINTQuitsAtOnce: Ctrl-C twice exits 130 without waiting for the requests
// in flight; those then land on the server all the same, and running the same command
// again finds them (by logging in with the journaled passwords) and loses nobody.
func TestSecondSIGINTQuitsAtOnce(t *testing.T) {
	bin := buildProvision(t)
	f := newSignalFixture(t, 30, 6)
	p := startProvision(t, bin, f.dir, nil, f.args...)
	waitFor(t, 30*time.Second, "4 registrations held in the server", func() bool { return f.srv.held.Load() == 4 || p.exited() })
	if p.exited() {
		t.Fatalf("provision exited %d early:\n%s", p.state.ExitCode(), p.stderr.String())
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "provision to acknowledge the first signal", func() bool {
		return strings.Contains(p.stderr.String(), "finishing the requests already sent")
	})
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	// The gate is still shut: provision must exit without the answers.
	if code := p.wait(t, 30*time.Second); code != ExitInterrupted {
		t.Fatalf("exit %d, want %d:\n%s", code, ExitInterrupted, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "quitting at once") {
		t.Errorf("stderr does not say it quit at once:\n%s", p.stderr.String())
	}
	if _, err := os.Stat(filepath.Join(f.dir, "credentials.age")); err == nil {
		t.Error("a credentials file was committed by a run that quit at once")
	}

	// The held registrations now happen on the server, for a client that is gone.
	f.srv.open()
	waitFor(t, 30*time.Second, "the held registrations to land", func() bool { return len(f.srv.Users()) == 10 })

	before := f.srv.Counts().Registrations
	again := startProvision(t, bin, f.dir, nil, f.args...)
	if code := again.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("the re-run exited %d:\n%s", code, again.stderr.String())
	}
	if got := f.srv.Counts().Registrations - before; got != 20 {
		t.Errorf("the re-run registered %d users, want the 20 never sent", got)
	}
	if n := len(f.srv.Users()); n != 30 {
		t.Errorf("the server has %d accounts, want 30", n)
	}
	got := f.checkHandedOff(t)
	if len(got) != 30 {
		t.Errorf("%d users handed off, want all 30", len(got))
	}
	for lp, row := range readReport(t, filepath.Join(f.dir, "report.csv")) {
		if row[2] != "created" {
			t.Errorf("re-run: %s is %q (%s), want created", lp, row[2], row[4])
		}
	}
}
