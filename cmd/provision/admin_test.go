package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/dendritetest"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
	"github.com/provision-matrix/provision/internal/reconcile"
)

var updatePlanGolden = flag.Bool("update-plan-golden", false, "rewrite testdata/plan/*.txt from the current output")

// The admin's token in these tests: it must never appear in any output.
const cliAdminToken = "syt_YWRtaW4_cliAdminTokenMustNotLeak_0x"

// adminEnv is a fake Synapse, an operator's age key and a directory of files.
type adminEnv struct {
	t         *testing.T
	srv       *matrixtest.Server
	dir       string
	tokenFile string
	id        *age.X25519Identity
	keyFile   string
}

func newAdminEnv(t *testing.T, o matrixtest.Options) *adminEnv {
	t.Helper()
	if o.AdminToken == "" {
		o.AdminToken = cliAdminToken
	}
	e := &adminEnv{t: t, srv: matrixtest.NewServer(t, o), dir: t.TempDir()}
	e.tokenFile = e.write("admin-token", o.AdminToken+"\n")
	e.id, e.keyFile = newIdentity(t, e.dir)
	return e
}

func (e *adminEnv) write(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *adminEnv) path(name string) string { return filepath.Join(e.dir, name) }

// provision runs the command in-process against the fake with the admin token, and
// checks that the token never appears in what it printed.
func (e *adminEnv) provision(args ...string) (int, string, string) {
	e.t.Helper()
	base := []string{"--homeserver", e.srv.URL(), "--admin-token-file", e.tokenFile, "--journal", e.path("provision.journal")}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") && !strings.HasSuffix(args[0], ".csv") {
		// A subcommand goes first.
		base = append([]string{args[0]}, base...)
		args = args[1:]
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append(base, args...), strings.NewReader(""), &stdout, &stderr)
	code := exitCode(err, &stderr)
	for _, out := range []string{stdout.String(), stderr.String()} {
		if strings.Contains(out, cliAdminToken) {
			e.t.Errorf("the admin token appears in the output:\n%s", out)
		}
	}
	return code, stdout.String(), stderr.String()
}

// apply runs a sync that hands passwords to the operator's key.
func (e *adminEnv) apply(n int, rosterFile string, flags ...string) (int, string) {
	e.t.Helper()
	args := append([]string{"--recipient", e.id.Recipient().String(),
		"--credentials", e.path(fmt.Sprintf("credentials-%d.age", n)), "--report", e.path(fmt.Sprintf("report-%d.csv", n))}, flags...)
	code, _, stderr := e.provision(append(args, rosterFile)...)
	return code, stderr
}

func (e *adminEnv) credentials(n int) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, r := range decryptCredentials(e.t, e.path(fmt.Sprintf("credentials-%d.age", n)), e.keyFile, e.id) {
		out[r[0]] = r[1]
	}
	return out
}

func stateChanges(c matrixtest.Counts) int {
	n := 0
	for route, k := range c.Requests {
		if strings.HasPrefix(route, "PUT ") || strings.HasPrefix(route, "POST ") {
			n += k
		}
	}
	return n
}

// staff is one person of the sync scenario's rosters.
type staff struct {
	lp, name string
	admin    bool
}

func staffCSV(people []staff) string {
	var b strings.Builder
	b.WriteString("localpart,displayname,email,admin,rooms\n")
	for _, p := range people {
		fmt.Fprintf(&b, "%s,%q,%s@example.org,%v,#all:example.org\n", p.lp, p.name, p.lp, p.admin)
	}
	return b.String()
}

// assertServerMatches checks, through the fake's state, that the accounts provision
// manages are exactly the roster's people, as the roster describes them, and that
// those who left are deactivated.
func assertServerMatches(t *testing.T, srv *matrixtest.Server, people []staff, left []string) {
	t.Helper()
	want := map[string]staff{}
	for _, p := range people {
		want[p.lp] = p
	}
	var managed []string
	for _, u := range srv.Users() {
		if !slices.Contains(u.ExternalIDs, reconcile.Marker(u.UserID)) {
			continue
		}
		if slices.Contains(left, u.Localpart) {
			if !u.Deactivated || u.Erased {
				t.Errorf("%s left the roster: deactivated %v, erased %v; want deactivated, not erased", u.Localpart, u.Deactivated, u.Erased)
			}
			continue
		}
		managed = append(managed, u.Localpart)
		p, ok := want[u.Localpart]
		if !ok {
			t.Errorf("%s is on the server, active, but not in the roster", u.Localpart)
			continue
		}
		wantEmail := []matrix.ThreePID{{Medium: "email", Address: p.lp + "@example.org"}}
		if u.Deactivated || u.DisplayName != p.name || u.Admin != p.admin || !slices.Equal(u.ThreePIDs, wantEmail) {
			t.Errorf("%s on the server: %+v; roster: %+v", u.Localpart, u, p)
		}
	}
	if len(managed) != len(people) {
		t.Errorf("%d active accounts carry provision's marker, the roster has %d", len(managed), len(people))
	}
	var inRoom []string
	for _, id := range srv.Members("!all:example.org") {
		inRoom = append(inRoom, strings.TrimSuffix(strings.TrimPrefix(id, "@"), ":example.org"))
	}
	var wantRoom []string
	for _, p := range people {
		wantRoom = append(wantRoom, p.lp)
	}
	sort.Strings(wantRoom)
	if !slices.Equal(inRoom, wantRoom) {
		t.Errorf("members of #all: %v, want %v", inRoom, wantRoom)
	}
}

// TestAdminSyncScenario is the nightly job three nights running: onboard 30 people;
// then 5 change names, 3 join and 4 leave; then nothing changes. After every run the
// server holds exactly what the roster says, and no existing account's password has
// changed.
func TestAdminSyncScenario(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t, matrixtest.Options{})
	e.srv.AddRoom("!all:example.org", "#all:example.org")
	// Not provision's: a bot, and the admin itself. Never touched.
	e.srv.AddUser(matrixtest.FakeUser{Localpart: "helpdesk-bot", UserType: "bot", DisplayName: "Helpdesk"}, "bot-password-1234")
	sync := []string{"--update", "--deactivate-missing", "--rate", "0"}

	var night1 []staff
	for i := range 30 {
		night1 = append(night1, staff{lp: fmt.Sprintf("staff%02d", i), name: fmt.Sprintf("Staff Member %02d", i), admin: i == 1})
	}
	code, stderr := e.apply(1, e.write("night1.csv", staffCSV(night1)), sync...)
	if code != 0 {
		t.Fatalf("night 1 exited %d:\n%s", code, stderr)
	}
	rep := readReport(t, e.path("report-1.csv"))
	for _, p := range night1 {
		if rep[p.lp][2] != "created" {
			t.Errorf("night 1: %s is %v, want created", p.lp, rep[p.lp])
		}
	}
	assertServerMatches(t, e.srv, night1, nil)
	pw1 := e.credentials(1)
	if len(pw1) != 30 {
		t.Fatalf("night 1 handed off %d passwords, want 30", len(pw1))
	}
	for id, pw := range pw1 {
		if !e.srv.CheckPassword(strings.TrimSuffix(strings.TrimPrefix(id, "@"), ":example.org"), pw) {
			t.Errorf("night 1: %s's handed-off password does not log in", id)
		}
	}

	// Night 2: five new names, three newcomers, four leavers.
	night2 := slices.Clone(night1[:26])
	for i := 0; i < 10; i += 2 {
		night2[i].name += " (Renamed)"
	}
	for i := range 3 {
		night2 = append(night2, staff{lp: fmt.Sprintf("newcomer%d", i), name: fmt.Sprintf("Newcomer %d", i)})
	}
	left := []string{"staff26", "staff27", "staff28", "staff29"}
	code, stderr = e.apply(2, e.write("night2.csv", staffCSV(night2)), sync...)
	if code != 0 {
		t.Fatalf("night 2 exited %d:\n%s", code, stderr)
	}
	statuses := map[string]int{}
	for _, row := range readReport(t, e.path("report-2.csv")) {
		statuses[row[2]]++
	}
	if want := map[string]int{"updated": 5, "created": 3, "deactivated": 4, "unchanged": 21}; fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Errorf("night 2 report: %v, want %v", statuses, want)
	}
	if !strings.Contains(stderr, "plan: 3 to create, 5 to update, 4 to deactivate, 21 unchanged") {
		t.Errorf("night 2 did not show its plan:\n%s", stderr)
	}
	assertServerMatches(t, e.srv, night2, left)
	pw2 := e.credentials(2)
	if len(pw2) != 3 {
		t.Errorf("night 2 handed off %d passwords, want 3 (the newcomers only)", len(pw2))
	}
	// Nobody's password changed: the first night's still log in for everyone who stayed.
	cl, err := matrix.NewClient(e.srv.URL(), e.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range night2[:26] {
		id := "@" + p.lp + ":example.org"
		if !e.srv.CheckPassword(p.lp, pw1[id]) {
			t.Errorf("night 2 changed %s's password", id)
		}
	}
	for _, lp := range left {
		if _, err := cl.Login(t.Context(), lp, pw1["@"+lp+":example.org"]); matrix.Errcode(err) != "M_FORBIDDEN" {
			// Synapse drops a deactivated account's password hash: its login fails
			// like a wrong password.
			t.Errorf("%s left, yet logging in gives %v", lp, err)
		}
	}
	if bot, _ := e.srv.User("helpdesk-bot"); bot.Deactivated || !e.srv.CheckPassword("helpdesk-bot", "bot-password-1234") {
		t.Errorf("the bot was touched: %+v", bot)
	}

	// Night 3: the same roster again changes nothing and sends nothing that changes state.
	before := stateChanges(e.srv.Counts())
	code, stderr = e.apply(3, e.path("night2.csv"), sync...)
	if code != 0 {
		t.Fatalf("night 3 exited %d:\n%s", code, stderr)
	}
	for lp, row := range readReport(t, e.path("report-3.csv")) {
		if row[2] != "unchanged" {
			t.Errorf("night 3: %s is %v, want unchanged", lp, row)
		}
	}
	if n := stateChanges(e.srv.Counts()) - before; n != 0 {
		t.Errorf("night 3 sent %d state-changing requests", n)
	}
	if !strings.Contains(stderr, "plan: 0 to create, 0 to update, 0 to deactivate, 29 unchanged") {
		t.Errorf("night 3's plan:\n%s", stderr)
	}
	if _, err := os.Stat(e.path("credentials-3.age")); !os.IsNotExist(err) {
		t.Errorf("night 3 wrote a credentials file: %v", err)
	}
	assertServerMatches(t, e.srv, night2, left)
	for id, pw := range pw2 {
		if !e.srv.CheckPassword(strings.TrimSuffix(strings.TrimPrefix(id, "@"), ":example.org"), pw) {
			t.Errorf("night 3 changed %s's password", id)
		}
	}
}

// planServer is the state the golden plans are made against.
func planServer(t *testing.T) *adminEnv {
	t.Helper()
	e := newAdminEnv(t, matrixtest.Options{})
	s := e.srv
	marked := func(lp string) []matrix.ExternalID { return []matrix.ExternalID{reconcile.Marker(s.UserID(lp))} }
	s.AddRoom("!general:example.org", "#general:example.org")
	s.AddRoom("!ops:example.org", "")
	s.AddUser(matrixtest.FakeUser{Localpart: "bob", DisplayName: "B", ThreePIDs: []matrix.ThreePID{{Medium: "email", Address: "b@old.example"}}, ExternalIDs: marked("bob")}, "pw")
	s.AddUser(matrixtest.FakeUser{Localpart: "cy", DisplayName: "Cy", ExternalIDs: marked("cy")}, "pw")
	s.AddUser(matrixtest.FakeUser{Localpart: "dan", Deactivated: true, ExternalIDs: marked("dan")}, "")
	s.AddUser(matrixtest.FakeUser{Localpart: "eve", DisplayName: "Eve"}, "pw")
	s.AddUser(matrixtest.FakeUser{Localpart: "fay", DisplayName: "Fay", ThreePIDs: []matrix.ThreePID{{Medium: "email", Address: "fay@example.org"}}, ExternalIDs: marked("fay")}, "pw")
	s.AddUser(matrixtest.FakeUser{Localpart: "root", Admin: true, ExternalIDs: marked("root")}, "pw")
	e.write("team.csv", `localpart,displayname,email,admin,user_type,rooms
ann,Ann Arbor,ann@example.org,false,,#general:example.org
bob,Bob,bob@example.org,true,,#general:example.org !ops:example.org
ci,CI Runner,,true,bot,
dan,Dan,,false,,
fay,Fay,FAY@example.org,false,,
`)
	return e
}

// TestPlanGolden checks provision plan's text, which operators read before a run.
// go test -run TestPlanGolden -update-plan-golden rewrites the files.
func TestPlanGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		flags []string
	}{
		{"create-only", nil},
		{"sync", []string{"--update", "--deactivate-missing"}},
		{"sync-erase", []string{"--update", "--deactivate-missing", "--erase"}},
		{"reset-passwords", []string{"--reset-passwords", "--logout-devices=false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := planServer(t)
			code, stdout, stderr := e.provision(append(append([]string{"plan"}, tt.flags...), e.path("team.csv"))...)
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, stderr)
			}
			if w := stateChanges(e.srv.Counts()); w != 0 {
				t.Errorf("plan sent %d state-changing requests", w)
			}
			golden := filepath.Join("testdata", "plan", tt.name+".txt")
			if *updatePlanGolden {
				if err := os.WriteFile(golden, []byte(stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update-plan-golden to create it)", err)
			}
			if stdout != string(want) {
				t.Errorf("plan differs from %s:\n--- got\n%s--- want\n%s", golden, stdout, want)
			}
			// --dry-run in admin mode is the same plan.
			code, dry, _ := e.provision(append(append([]string{"--dry-run"}, tt.flags...), e.path("team.csv"))...)
			if code != 0 || dry != stdout {
				t.Errorf("--dry-run (exit %d) printed:\n%s\nwant the plan:\n%s", code, dry, stdout)
			}
			if _, err := os.Stat(e.path("provision.journal")); !os.IsNotExist(err) {
				t.Errorf("a plan created the journal: %v", err)
			}
		})
	}
}

func TestPlanOverTheLimitWarns(t *testing.T) {
	t.Parallel()
	e := planServer(t)
	code, stdout, stderr := e.provision("plan", "--deactivate-missing", "--max-deactivate", "0", e.path("team.csv"))
	if code != 0 || !strings.Contains(stdout, "- @cy:example.org  deactivate") {
		t.Fatalf("exit %d, plan:\n%s", code, stdout)
	}
	if !strings.Contains(stderr, "would stop before changing anything") || !strings.Contains(stderr, "1 accounts would be deactivated") {
		t.Errorf("no warning about the limit:\n%s", stderr)
	}
}

func TestPlanNeedsTheAdminToken(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("s3cret"), 0o600)
	err := run(context.Background(), []string{"plan", "--shared-secret-file", secret, filepath.Join(dir, "team.csv")}, strings.NewReader(""), &stdout, &stderr)
	if code := exitCode(err, &stderr); code != ExitUsage || !strings.Contains(stderr.String(), "--admin-token-file") {
		t.Errorf("exit %d:\n%s", code, stderr.String())
	}
}

// More deactivations than --max-deactivate stop the whole run before anything is
// sent that changes state, with the numbers and the way forward.
func TestAdminMaxDeactivateAborts(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t, matrixtest.Options{})
	for i := range 12 {
		lp := fmt.Sprintf("former%02d", i)
		e.srv.AddUser(matrixtest.FakeUser{Localpart: lp, ExternalIDs: []matrix.ExternalID{reconcile.Marker(e.srv.UserID(lp))}}, "pw")
	}
	code, stderr := e.apply(1, e.write("team.csv", "localpart\nnewbie\n"), "--deactivate-missing")
	if code != ExitUsage {
		t.Fatalf("exit %d, want %d:\n%s", code, ExitUsage, stderr)
	}
	for _, want := range []string{"refusing to deactivate 12 accounts, more than --max-deactivate 10", "nothing was changed", "--max-deactivate 12", "provision plan"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if w := stateChanges(e.srv.Counts()); w != 0 {
		t.Errorf("%d state-changing requests before the abort", w)
	}
	if _, ok := e.srv.User("newbie"); ok {
		t.Error("newbie was created")
	}
	if _, err := os.Stat(e.path("credentials-1.age")); !os.IsNotExist(err) {
		t.Errorf("credentials file: %v", err)
	}

	// With the limit raised as the message says, the run goes through.
	code, stderr = e.apply(2, e.path("team.csv"), "--deactivate-missing", "--max-deactivate", "12")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	if u, _ := e.srv.User("former11"); !u.Deactivated {
		t.Error("former11 was not deactivated")
	}
}

// A server without the Synapse admin API is named as such, with the way out, and
// nothing is sent; never "user not found".
func TestAdminModeOnDendrite(t *testing.T) {
	t.Parallel()
	for _, o := range []matrixtest.Options{{Dialect: matrixtest.Dendrite, SharedSecret: "s"}, {NoAdminAPI: true}} {
		t.Run(o.Dialect.String()+fmt.Sprint(o.NoAdminAPI), func(t *testing.T) {
			t.Parallel()
			e := newAdminEnv(t, o)
			code, stderr := e.apply(1, e.write("team.csv", "localpart\nann\n"), "--update")
			if code != ExitUsage {
				t.Fatalf("exit %d, want %d:\n%s", code, ExitUsage, stderr)
			}
			for _, want := range []string{"has no Synapse admin API", "nothing was sent", "--shared-secret-file"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if strings.Contains(stderr, "not found") {
				t.Errorf("reported as not found:\n%s", stderr)
			}
			if w := stateChanges(e.srv.Counts()); w != 0 {
				t.Errorf("%d state-changing requests", w)
			}
		})
	}
}

// The same against a real Dendrite, with a real admin's access token.
func TestAdminModeOnRealDendrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Dendrite")
	}
	srv := dendritetest.StartForTest(t)
	cl, err := matrix.NewClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	const pw = "admin-password-for-the-test"
	if _, err := cl.RegisterSharedSecret(t.Context(), srv.SharedSecret, matrix.Registration{Localpart: "opsadmin", Password: pw, Admin: true}); err != nil {
		t.Fatal(err)
	}
	tok, err := cl.Login(t.Context(), "opsadmin", pw)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	rosterFile := filepath.Join(dir, "team.csv")
	os.WriteFile(tokenFile, []byte(tok), 0o600)
	os.WriteFile(rosterFile, []byte("localpart\nann\n"), 0o600)
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"--homeserver", srv.URL, "--admin-token-file", tokenFile, "--plaintext-credentials",
		"--credentials", filepath.Join(dir, "c.csv"), "--report", filepath.Join(dir, "r.csv"), rosterFile}, strings.NewReader(""), &stdout, &stderr)
	code := exitCode(err, &stderr)
	if code != ExitUsage || !strings.Contains(stderr.String(), "has no Synapse admin API") || strings.Contains(stderr.String(), tok) {
		t.Errorf("exit %d:\n%s", code, stderr.String())
	}
	if av, err := cl.UsernameAvailable(t.Context(), "ann"); err != nil || av != matrix.Available {
		t.Errorf("ann: %v, %v; want still available", av, err)
	}
}

func TestAdminTokenRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, want string
		token      func(*matrixtest.Server) string
	}{
		{"unknown token (401)", "does not accept the admin token", func(*matrixtest.Server) string { return "syt_unknown_cliAdminTokenMustNotLeak" }},
		{"not an admin (403)", "not a server admin", func(s *matrixtest.Server) string {
			s.AddUser(matrixtest.FakeUser{Localpart: "mallory"}, "pw")
			return s.NewSession("mallory")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newAdminEnv(t, matrixtest.Options{})
			tok := tt.token(e.srv)
			e.tokenFile = e.write("other-token", tok)
			code, stderr := e.apply(1, e.write("team.csv", "localpart\nann\n"))
			if code != ExitUsage || !strings.Contains(stderr, tt.want) || !strings.Contains(stderr, e.tokenFile) {
				t.Errorf("exit %d:\n%s", code, stderr)
			}
			if strings.Contains(stderr, tok) {
				t.Errorf("the token appears on stderr")
			}
			if w := stateChanges(e.srv.Counts()); w != 0 {
				t.Errorf("%d state-changing requests", w)
			}
		})
	}
}

// Two runs on one journal: while the first is changing the server, a second run and
// a plan exit at once with ExitLocked; the first finishes undisturbed.
func TestAdminLockContention(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	hold := func(r *http.Request) matrixtest.Fault {
		if r.Method == http.MethodPut {
			<-release
		}
		return matrixtest.Fault{}
	}
	e := newAdminEnv(t, matrixtest.Options{Faults: hold})
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the server closes
	rosterFile := e.write("team.csv", "localpart\nann\n")

	first := make(chan int, 1)
	go func() {
		code, stderr := e.apply(1, rosterFile)
		if code != 0 {
			t.Errorf("first run exited %d:\n%s", code, stderr)
		}
		first <- code
	}()
	for e.srv.Counts().Requests["PUT /_synapse/admin/v2/users/{userID}"] == 0 {
		select {
		case <-first:
			t.Fatal("the first run ended before it sent its PUT")
		case <-time.After(2 * time.Millisecond):
		}
	}

	code, stderr := e.apply(2, rosterFile)
	if code != ExitLocked || !strings.Contains(stderr, "in use by another provision run") {
		t.Errorf("second run: exit %d, want %d:\n%s", code, ExitLocked, stderr)
	}
	code, _, stderr = e.provision("plan", rosterFile)
	if code != ExitLocked || !strings.Contains(stderr, "plan again when it has finished") {
		t.Errorf("plan during a run: exit %d, want %d:\n%s", code, ExitLocked, stderr)
	}
	if n := e.srv.Counts().Requests["PUT /_synapse/admin/v2/users/{userID}"]; n != 1 {
		t.Errorf("%d PUTs: the refused runs sent requests", n)
	}

	once.Do(func() { close(release) })
	if code := <-first; code != 0 {
		t.Fatalf("first run exit %d", code)
	}
	if _, ok := e.srv.User("ann"); !ok {
		t.Error("ann was not created")
	}
	// Once it is over, the lock is free again.
	if code, _, stderr := e.provision("plan", rosterFile); code != 0 {
		t.Errorf("plan after the run: exit %d:\n%s", code, stderr)
	}
}

// A shared secret and an admin token together: the admin API is used.
func TestAdminTokenWinsOverSecret(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t, matrixtest.Options{SharedSecret: "s3cret-shared"})
	secret := e.write("secret", "s3cret-shared")
	code, stderr := e.apply(1, e.write("team.csv", "localpart\nann\n"), "--shared-secret-file", secret)
	if code != 0 || !strings.Contains(stderr, "using the admin token") {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	c := e.srv.Counts()
	if c.Requests["PUT /_synapse/admin/v2/users/{userID}"] != 1 || c.Requests["POST /_synapse/admin/v1/register"] != 0 {
		t.Errorf("requests %v", c.Requests)
	}
	if ann, _ := e.srv.User("ann"); !slices.Contains(ann.ExternalIDs, reconcile.Marker(ann.UserID)) {
		t.Errorf("ann = %+v, want provision's marker", ann)
	}
}

// A room that cannot be joined: the account is created all the same, the join's error
// is on its row, and the run exits 1 so that a scheduled job is noticed.
func TestAdminFailedJoin(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t, matrixtest.Options{})
	e.srv.AddRoom("!all:example.org", "#all:example.org")
	code, stderr := e.apply(1, e.write("team.csv", "localpart,rooms\nann,#all:example.org #gone:example.org\n"))
	if code != ExitFailed || !strings.Contains(stderr, "@ann:example.org: join #gone:example.org: Room alias #gone:example.org not found") {
		t.Errorf("exit %d:\n%s", code, stderr)
	}
	row := readReport(t, e.path("report-1.csv"))["ann"]
	if row[2] != "created" || row[3] != "M_NOT_FOUND" || !strings.Contains(row[4], "join #gone:example.org") {
		t.Errorf("ann's row %v", row)
	}
	if got := e.srv.Members("!all:example.org"); !slices.Equal(got, []string{"@ann:example.org"}) {
		t.Errorf("members of #all: %v", got)
	}
	if len(e.credentials(1)) != 1 {
		t.Error("ann's password was not handed off")
	}
}
