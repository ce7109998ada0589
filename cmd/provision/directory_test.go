package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/provision-matrix/provision/internal/dendritetest"
	"github.com/provision-matrix/provision/internal/matrixtest"
	"github.com/provision-matrix/provision/internal/slapdtest"
)

// The directory tests run against a real OpenLDAP slapd (internal/slapdtest; skipped
// without one unless PROVISION_REQUIRE_SLAPD=1). The filter selects user00001 to
// user00019: few enough for Dendrite, which creates accounts slowly.
const dirFilter = "(|(uid=user0000*)(uid=user0001*))"

// dirURL is the search of the tests: the people below ou=people that the filter
// selects, over ldaps://.
func dirURL(s *slapdtest.Server, filter string) string {
	return s.LDAPSURL + "/" + slapdtest.PeopleDN + "??sub?" + strings.ReplaceAll(filter, " ", "%20")
}

// dirFlags bind as the reader with the test's CA.
func dirFlags(s *slapdtest.Server) []string {
	return []string{"--ldap-bind-dn", slapdtest.BindDN, "--ldap-password-file", s.PasswordFile, "--ca-file", s.CAFile}
}

// ldapAdmin changes the test's directory as its administrator (the rootdn, which
// scripts/slapd gives the reader's password).
func ldapAdmin(t *testing.T, s *slapdtest.Server) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(s.LDAPURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Bind("cn=admin,"+slapdtest.Suffix, string(s.BindPassword)); err != nil {
		t.Fatal(err)
	}
	return c
}

func person(n int) string { return fmt.Sprintf("uid=user%05d,%s", n, slapdtest.PeopleDN) }

// TestDirectoryCreateOnDendrite: the people of a directory search become accounts on
// a real homeserver, and the same search again changes nothing.
func TestDirectoryCreateOnDendrite(t *testing.T) {
	ldapSrv := slapdtest.Start(t, 40)
	srv := dendritetest.StartForTest(t)
	dir := t.TempDir()
	id, _ := newIdentity(t, dir)
	rep := filepath.Join(dir, "report.csv")
	args := append(dirFlags(ldapSrv), "--homeserver", srv.URL, "--shared-secret-file", srv.SharedSecretFile,
		"--recipient", id.Recipient().String(), "--concurrency", "4", "--rate", "0",
		"--credentials", filepath.Join(dir, "credentials.age"), "--report", rep, dirURL(ldapSrv, dirFilter))
	code, _, stderr := runCLI(t, nil, args...)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	report := readReport(t, rep)
	if len(report) != 19 {
		t.Fatalf("report has %d rows, want 19 (user00001..user00019):\n%s", len(report), stderr)
	}
	for lp, row := range report {
		if row[2] != "created" || row[1] != "@"+lp+":"+srv.ServerName {
			t.Errorf("%s: %v, want created as @%s:%s", lp, row, lp, srv.ServerName)
		}
	}
	if strings.Contains(stderr, string(ldapSrv.BindPassword)) {
		t.Error("the bind password appears on stderr")
	}
	args[len(args)-4] = filepath.Join(dir, "credentials-2.age") // --credentials value
	if code, _, stderr = runCLI(t, nil, args...); code != 0 {
		t.Fatalf("second run: exit %d:\n%s", code, stderr)
	}
	for lp, row := range readReport(t, rep) {
		if row[2] != "exists" {
			t.Errorf("second run: %s is %q, want exists", lp, row[2])
		}
	}
}

// dirSync is a fake Synapse with the rooms of the rooms map, and the sync's flags.
type dirSync struct {
	*adminEnv
	ldap  *slapdtest.Server
	rooms string
}

const (
	staffRoom = "!staff:example.org"
	engRoom   = "!eng:example.org"
)

func newDirSync(t *testing.T, people int) *dirSync {
	e := &dirSync{adminEnv: newAdminEnv(t, matrixtest.Options{}), ldap: slapdtest.Start(t, people)}
	e.srv.AddRoom(staffRoom, "#staff:example.org")
	e.srv.AddRoom(engRoom, "")
	e.srv.AddRoom("!other:example.org", "")
	e.rooms = e.write("rooms.yaml", "staff: [\"#staff:example.org\"]\n\"cn=engineering,ou=groups,dc=example,dc=org\": [\""+engRoom+"\"]\n")
	return e
}

// sync runs an applying sync from the directory with the ad preset (its
// userAccountControl marks disabled accounts) and returns the exit code and stderr.
func (e *dirSync) sync(n int, filter string, flags ...string) (int, string) {
	e.t.Helper()
	args := append(dirFlags(e.ldap), "--ldap-map", "ad", "--rooms-map", e.rooms, "--state-dir", e.path("state"))
	args = append(args, flags...)
	return e.apply(n, dirURL(e.ldap, filter), args...)
}

func (e *dirSync) row(n int, lp string) []string {
	return readReport(e.t, e.path(fmt.Sprintf("report-%d.csv", n)))[lp]
}

// TestDirectorySync: a person removed from the directory, one disabled there and one
// added to a group with rooms, then a sync that deactivates and joins exactly those,
// and, with --leave-dropped-rooms, makes a person taken out of a group leave its room.
func TestDirectorySync(t *testing.T) {
	e := newDirSync(t, 40)
	sync := []string{"--update", "--deactivate-missing", "--leave-dropped-rooms"}
	code, stderr := e.sync(1, dirFilter, sync...)
	if code != 0 {
		t.Fatalf("first sync: exit %d:\n%s", code, stderr)
	}
	for i := 1; i <= 19; i++ {
		if row := e.row(1, fmt.Sprintf("user%05d", i)); row == nil || row[2] != "created" {
			t.Fatalf("first sync: user%05d: %v, want created", i, row)
		}
	}
	if got := len(e.srv.Members(staffRoom)); got != 9 {
		t.Errorf("staff room has %d members, want 9 (every 2nd person)", got)
	}
	// An account outside the map's rooms is never touched.
	e.srv.JoinUser("!other:example.org", e.srv.UserID("user00006"))

	c := ldapAdmin(t, e.ldap)
	if err := c.Del(ldap.NewDelRequest(person(5), nil)); err != nil {
		t.Fatal(err)
	}
	mod := ldap.NewModifyRequest(person(7), nil)
	mod.Replace("userAccountControl", []string{"514"}) // ACCOUNTDISABLE
	if err := c.Modify(mod); err != nil {
		t.Fatal(err)
	}
	grp := ldap.NewModifyRequest("cn=engineering,"+slapdtest.GroupsDN, nil)
	grp.Add("member", []string{person(4)})
	if err := c.Modify(grp); err != nil {
		t.Fatal(err)
	}
	grp = ldap.NewModifyRequest("cn=staff,"+slapdtest.GroupsDN, nil)
	grp.Delete("member", []string{person(6)})
	if err := c.Modify(grp); err != nil {
		t.Fatal(err)
	}

	// The plan says exactly that.
	code, plan, stderr := e.provision(append(append(dirFlags(e.ldap), "plan", "--ldap-map", "ad", "--rooms-map", e.rooms, "--state-dir", e.path("state")),
		append(sync, dirURL(e.ldap, dirFilter))...)...)
	if code != 0 {
		t.Fatalf("plan: exit %d:\n%s", code, stderr)
	}
	want := []string{
		"~ @user00004:example.org  join " + engRoom,
		"~ @user00006:example.org  leave #staff:example.org",
		"- @user00005:example.org  deactivate",
		"- @user00007:example.org  deactivate",
	}
	var got []string
	for _, l := range strings.Split(plan, "\n") {
		if strings.HasPrefix(l, "+") || strings.HasPrefix(l, "~") || strings.HasPrefix(l, "-") || strings.HasPrefix(l, "!") {
			got = append(got, l)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("plan:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	before := e.srv.Counts()
	code, stderr = e.sync(2, dirFilter, sync...)
	if code != 0 {
		t.Fatalf("second sync: exit %d:\n%s", code, stderr)
	}
	for lp, status := range map[string]string{"user00004": "updated", "user00005": "deactivated", "user00006": "updated", "user00007": "deactivated", "user00008": "unchanged"} {
		if row := e.row(2, lp); row == nil || row[2] != status {
			t.Errorf("second sync: %s: %v, want %s", lp, row, status)
		}
	}
	for _, lp := range []string{"user00005", "user00007"} {
		if u, _ := e.srv.User(lp); !u.Deactivated {
			t.Errorf("%s is not deactivated", lp)
		}
	}
	if !slices.Contains(e.srv.Members(engRoom), e.srv.UserID("user00004")) {
		t.Error("user00004 was not joined to the engineering room")
	}
	if slices.Contains(e.srv.Members(staffRoom), e.srv.UserID("user00006")) {
		t.Error("user00006 is still in the staff room")
	}
	if !slices.Contains(e.srv.Members("!other:example.org"), e.srv.UserID("user00006")) {
		t.Error("user00006 left a room the rooms map does not name")
	}
	if n := e.srv.Tokens("user00006"); n != 0 {
		t.Errorf("user00006 has %d live tokens after leaving: the login-as token was not logged out", n)
	}
	after := e.srv.Counts()
	// 2 deactivations and 1 join; the leave is a login as the user, the leave and a
	// logout.
	if n := stateChanges(after) - stateChanges(before); n != 6 {
		t.Errorf("the second sync sent %d requests that change something, want 6", n)
	}
	if n := after.Requests["POST /_matrix/client/v3/rooms/{roomID}/leave"] - before.Requests["POST /_matrix/client/v3/rooms/{roomID}/leave"]; n != 1 {
		t.Errorf("%d leaves sent, want 1", n)
	}
	if !strings.Contains(stderr, "1 disabled accounts left out") && !strings.Contains(stderr, "disabled") {
		t.Errorf("stderr does not say a disabled account was left out:\n%s", stderr)
	}
}

// TestDirectoryRefusals: a directory that cannot be read, or reads as far fewer
// people than before, stops the sync with exit 2 before anything changes.
func TestDirectoryRefusals(t *testing.T) {
	e := newDirSync(t, 40)
	if code, stderr := e.sync(1, dirFilter, "--deactivate-missing"); code != 0 {
		t.Fatalf("first sync: exit %d:\n%s", code, stderr)
	}
	countFile := e.path("provision.journal.roster-count") // beside the journal the runs use
	if b, err := os.ReadFile(countFile); err != nil || strings.TrimSpace(string(b)) != "19" {
		t.Fatalf("roster count after a completed run: %q, %v; want 19", b, err)
	}

	wrongPw := e.write("wrong.password", "not-the-password\n")
	otherCA := e.write("other-ca.pem", selfSignedCA(t))
	cases := []struct {
		name  string
		args  []string
		wants []string
	}{
		{"bind failure", []string{"--ldap-bind-dn", slapdtest.BindDN, "--ldap-password-file", wrongPw, "--ca-file", e.ldap.CAFile, dirURL(e.ldap, dirFilter)},
			[]string{"the directory refused the service account", "invalid credentials", "nothing was changed"}},
		{"wrong CA", []string{"--ldap-bind-dn", slapdtest.BindDN, "--ldap-password-file", e.ldap.PasswordFile, "--ca-file", otherCA, dirURL(e.ldap, dirFilter)},
			[]string{"no trusted TLS connection", "--ca-file", "nothing was changed"}},
		{"empty search", append(dirFlags(e.ldap), e.ldap.LDAPSURL+"/"+slapdtest.EmptyDN),
			[]string{"the directory search found nobody", "nothing was changed"}},
		{"far fewer than last time", append(dirFlags(e.ldap), dirURL(e.ldap, "(uid=user0000*)")),
			[]string{"it has 9 users, and the last completed run had 19", "--min-roster-ratio"}},
		{"fewer than --min-roster", append(dirFlags(e.ldap), "--min-roster", "25", dirURL(e.ldap, dirFilter)),
			[]string{"it has 19 users, fewer than --min-roster 25"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := stateChanges(e.srv.Counts())
			args := append([]string{"--recipient", e.id.Recipient().String(), "--credentials", e.path(fmt.Sprintf("c%d.age", i)),
				"--report", e.path(fmt.Sprintf("r%d.csv", i)), "--ldap-map", "ad", "--deactivate-missing", "--state-dir", e.path("state")}, tc.args...)
			code, _, stderr := e.provision(args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2:\n%s", code, stderr)
			}
			for _, w := range tc.wants {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, string(e.ldap.BindPassword)) {
				t.Error("the bind password appears on stderr")
			}
			if n := stateChanges(e.srv.Counts()) - before; n != 0 {
				t.Errorf("%d changes reached the server", n)
			}
			for _, u := range e.srv.Users() {
				if u.Deactivated {
					t.Errorf("%s was deactivated", u.UserID)
				}
			}
		})
	}
	if b, _ := os.ReadFile(countFile); strings.TrimSpace(string(b)) != "19" {
		t.Errorf("a refused run changed the recorded roster count to %q", b)
	}
	// The plan shows what a refused run would have done, with the warning.
	code, out, stderr := e.provision(append(append([]string{"plan"}, dirFlags(e.ldap)...), "--ldap-map", "ad", "--deactivate-missing",
		"--max-deactivate", "-1", "--state-dir", e.path("state"), dirURL(e.ldap, "(uid=user0000*)"))...)
	if code != 0 || !strings.Contains(stderr, "would stop before changing anything") || !strings.Contains(out, "- @user00010:example.org  deactivate") {
		t.Errorf("plan of a shrunken roster: exit %d\n%s\n%s", code, out, stderr)
	}
}

// selfSignedCA is a CA that signed nothing the test's slapd has.
func selfSignedCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Some Other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestDirectoryCrashAndResume: a sync from the directory killed with SIGKILL while
// it creates accounts; the same command again finishes the job, and every password
// the killed run set is in the second run's handoff.
func TestDirectoryCrashAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a provision process")
	}
	ldapSrv := slapdtest.Start(t, 60)
	srv := matrixtest.NewServer(t, matrixtest.Options{AdminToken: cliAdminToken,
		// Slow creations, so that the kill lands in the middle of the run.
		Faults: func(r *http.Request) matrixtest.Fault {
			if r.Method == http.MethodPut {
				return matrixtest.Fault{Latency: 20 * time.Millisecond}
			}
			return matrixtest.Fault{}
		}})
	bin := buildProvision(t)
	dir := t.TempDir()
	id, keyFile := newIdentity(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(cliAdminToken), 0o600); err != nil {
		t.Fatal(err)
	}
	args := func(run int) []string {
		return append(dirFlags(ldapSrv), "--homeserver", srv.URL(), "--admin-token-file", "token", "--concurrency", "2",
			"--recipient", id.Recipient().String(), "--credentials", fmt.Sprintf("credentials-%d.age", run), "--report", "report.csv",
			"--deactivate-missing", ldapSrv.LDAPSURL+"/"+slapdtest.PeopleDN)
	}
	created := func() int {
		n := 0
		for _, u := range srv.Users() {
			if strings.HasPrefix(u.Localpart, "user") {
				n++
			}
		}
		return n
	}
	p := startProvision(t, bin, dir, nil, args(1)...)
	waitFor(t, 60*time.Second, "15 accounts created", func() bool { return created() >= 15 || p.exited() })
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	if ws, ok := p.state.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("the run ended before it was killed (exit %d):\n%s", p.state.ExitCode(), p.stderr.String())
	}
	killedAt := created()
	if killedAt >= 60 {
		t.Fatalf("the kill came too late (%d of 60 created) to test a resume", killedAt)
	}
	t.Logf("killed with %d of 60 accounts created", killedAt)

	final := startProvision(t, bin, dir, nil, args(2)...)
	if code := final.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("the resumed run exited %d:\n%s", code, final.stderr.String())
	}
	if n := created(); n != 60 {
		t.Errorf("%d accounts after the resumed run, want 60", n)
	}
	handed := map[string]string{}
	for _, r := range decryptCredentials(t, filepath.Join(dir, "credentials-2.age"), keyFile, id) {
		handed[r[0]] = r[1]
	}
	for _, u := range srv.Users() {
		if !strings.HasPrefix(u.Localpart, "user") {
			continue
		}
		pw, ok := handed[u.UserID]
		if !ok || !srv.CheckPassword(u.Localpart, pw) {
			t.Errorf("%s: no working password in the resumed run's credentials (handed off: %v)", u.UserID, ok)
		}
	}
}
