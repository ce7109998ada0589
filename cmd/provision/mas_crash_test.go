//go:build linux

package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/provision-matrix/provision/internal/mastest"
	"github.com/provision-matrix/provision/internal/matrixtest"
)

// TestMASKillAndResume kills provision (SIGKILL) while it creates accounts in MAS,
// wherever it happens to be (between creating a user and setting its password,
// say), then runs it again: every roster user ends up with exactly one account whose
// handed-off password logs in.
func TestMASKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildProvision(t)
	e := newMASEnv(t, mastest.Options{}, matrixtest.Options{})
	const n = 60
	var b strings.Builder
	b.WriteString("localpart,email\n")
	for i := range n {
		fmt.Fprintf(&b, "user%02d,user%02d@example.org\n", i, i)
	}
	roster := e.write("team.csv", b.String())

	// Slow enough to be caught in the middle.
	p := startProvision(t, bin, e.dir, nil, append(e.args(1), "--rate", "40", "--concurrency", "4", roster)...)
	waitFor(t, 30*time.Second, "some users in MAS", func() bool { return len(e.mas.Usernames()) >= 10 || p.exited() })
	if p.exited() {
		t.Fatalf("provision finished before it could be killed:\n%s", p.stderr.String())
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(t, 10*time.Second)
	killedAt := len(e.mas.Usernames())

	code, stderr := e.apply(2, roster)
	if code != 0 {
		t.Fatalf("resume: exit %d:\n%s", code, stderr)
	}
	users := e.mas.Usernames()
	if len(users) != n {
		t.Fatalf("%d users in MAS, want %d", len(users), n)
	}
	creds := e.credentials(2)
	if len(creds) != n {
		t.Errorf("%d passwords handed off by the resumed run, want %d (killed with %d users in MAS)", len(creds), n, killedAt)
	}
	for i := range n {
		lp := fmt.Sprintf("user%02d", i)
		if !e.mas.CheckPassword(lp, creds["@"+lp+":example.org"]) {
			t.Errorf("%s: the handed-off password does not log in", lp)
		}
		if u, _ := e.mas.User(lp); len(u.Emails) != 1 {
			t.Errorf("%s has emails %v", lp, u.Emails)
		}
	}
	// A third run has nothing left to do.
	before := e.mas.RequestCount(routePassword)
	if code, stderr := e.apply(3, roster); code != 0 || e.mas.RequestCount(routePassword) != before {
		t.Errorf("third run: exit %d, %d more set-password requests:\n%s", code, e.mas.RequestCount(routePassword)-before, stderr)
	}
}
