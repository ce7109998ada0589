package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/mastest"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
	"github.com/provision-matrix/provision/internal/reconcile"
)

// masEnv is a MAS, the homeserver that delegates to it (a fake Synapse behind a
// proxy that advertises the issuer, as a delegating Synapse does), an operator's key
// and a directory of files.
type masEnv struct {
	t          *testing.T
	mas        *mastest.Server
	hs         *matrixtest.Server
	hsURL      string
	dir        string
	secretFile string
	id         *age.X25519Identity
	keyFile    string
}

const masIssuer = "https://auth.example.org/"

func newMASEnv(t *testing.T, o mastest.Options, ho matrixtest.Options) *masEnv {
	t.Helper()
	ho.MAS = true
	e := &masEnv{t: t, mas: mastest.New(t, o), hs: matrixtest.NewServer(t, ho), dir: t.TempDir()}
	e.hsURL = delegatingFront(t, e.hs)
	e.secretFile = e.write("mas-client-secret", e.mas.ClientSecret()+"\n")
	e.id, e.keyFile = newIdentity(t, e.dir)
	return e
}

// delegatingFront answers Synapse's auth_metadata with MAS's issuer, as Synapse does
// when it delegates logins, and passes everything else to the fake homeserver.
func delegatingFront(t *testing.T, hs *matrixtest.Server) string {
	target, _ := url.Parse(hs.URL())
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_matrix/client/v1/auth_metadata" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"issuer": %q}`, masIssuer)
			return
		}
		r.URL.Scheme, r.URL.Host = target.Scheme, target.Host
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, r.URL.String(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(front.Close)
	return front.URL
}

func (e *masEnv) write(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *masEnv) path(name string) string { return filepath.Join(e.dir, name) }

// args are the flags of a MAS run whose outputs are numbered n.
func (e *masEnv) args(n int) []string {
	return []string{"--homeserver", e.hsURL, "--mas", e.mas.URL(), "--mas-client-id", e.mas.ClientID(),
		"--mas-client-secret-file", e.secretFile, "--journal", e.path("provision.journal"),
		"--recipient", e.id.Recipient().String(),
		"--credentials", e.path(fmt.Sprintf("credentials-%d.age", n)), "--report", e.path(fmt.Sprintf("report-%d.csv", n))}
}

// provision runs the command in-process and checks that no secret of the run
// (the client secret, a password it handed off) appears in what it printed.
func (e *masEnv) provision(args ...string) (int, string, string) {
	e.t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	code := exitCode(err, &stderr)
	for _, out := range []string{stdout.String(), stderr.String()} {
		if strings.Contains(out, e.mas.ClientSecret()) {
			e.t.Errorf("the MAS client secret appears in the output:\n%s", out)
		}
		if strings.Contains(out, "mat_") {
			e.t.Errorf("a MAS access token appears in the output:\n%s", out)
		}
	}
	return code, stdout.String(), stderr.String()
}

// apply runs provision on roster with the outputs numbered n.
func (e *masEnv) apply(n int, roster string, flags ...string) (int, string) {
	e.t.Helper()
	code, _, stderr := e.provision(append(append(e.args(n), flags...), roster)...)
	return code, stderr
}

// credentials maps each user ID handed off in run n to its password.
func (e *masEnv) credentials(n int) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	if _, err := os.Stat(e.path(fmt.Sprintf("credentials-%d.age", n))); err != nil {
		return out
	}
	for _, r := range decryptCredentials(e.t, e.path(fmt.Sprintf("credentials-%d.age", n)), e.keyFile, e.id) {
		out[r[0]] = r[1]
	}
	return out
}

const (
	routeCreate   = "POST /api/admin/v1/users"
	routePassword = "POST /api/admin/v1/users/{id}/set-password"
	routeLink     = "POST /api/admin/v1/upstream-oauth-links"
	routeToken    = "POST /oauth2/token"
)

// TestMASCreateAndRerun: the accounts are in MAS with the roster's email and admin
// flag, every handed-off password logs in, an account that was there before keeps
// its password, and a second run sends nothing that changes anything.
func TestMASCreateAndRerun(t *testing.T) {
	e := newMASEnv(t, mastest.Options{}, matrixtest.Options{})
	e.mas.AddUser(mastest.FakeUser{Username: "carol", Password: "carol's own password"})
	roster := e.write("team.csv", "localpart,displayname,email,admin\n"+
		"alice,Alice,Alice@Example.org,true\nbob,Bob,bob@example.org,false\ncarol,Carol,,false\n")

	code, stderr := e.apply(1, roster)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	creds := e.credentials(1)
	if len(creds) != 2 {
		t.Fatalf("credentials for %v, want alice and bob", creds)
	}
	for _, lp := range []string{"alice", "bob"} {
		pw := creds["@"+lp+":example.org"]
		if !e.mas.CheckPassword(lp, pw) {
			t.Errorf("%s: the handed-off password does not log in", lp)
		}
	}
	if a, _ := e.mas.User("alice"); !a.Admin || !slices.Equal(a.Emails, []string{"alice@example.org"}) {
		t.Errorf("alice in MAS = %+v, want admin with alice@example.org", a)
	}
	if b, _ := e.mas.User("bob"); b.Admin {
		t.Errorf("bob is an admin")
	}
	if !e.mas.CheckPassword("carol", "carol's own password") {
		t.Error("carol's own password no longer works: provision changed an existing account")
	}
	rep := readReport(t, e.path("report-1.csv"))
	if rep["alice"][2] != "created" || rep["bob"][2] != "created" || rep["carol"][2] != "exists" {
		t.Errorf("report = %v", rep)
	}
	if n := e.mas.RequestCount(routePassword); n != 2 {
		t.Errorf("%d set-password requests, want 2 (alice and bob, never carol)", n)
	}

	before := e.mas.Requests()
	code, stderr = e.apply(2, roster)
	if code != 0 {
		t.Fatalf("rerun: exit %d:\n%s", code, stderr)
	}
	after := e.mas.Requests()
	for route, n := range after {
		if strings.HasPrefix(route, "POST /api/admin/") && n != before[route] {
			t.Errorf("rerun sent %d × %s", n-before[route], route)
		}
	}
	if len(e.credentials(2)) != 0 {
		t.Error("the rerun handed passwords off")
	}
	for _, lp := range []string{"alice", "bob"} {
		if !e.mas.CheckPassword(lp, creds["@"+lp+":example.org"]) {
			t.Errorf("%s: the first run's password no longer logs in", lp)
		}
	}
}

// TestMASTransientFaults: a proxy's 429 and 503, an answer lost after MAS created the
// user, and tokens that expire every second are waited out, renewed and settled:
// every user exists once and every password logs in.
func TestMASTransientFaults(t *testing.T) {
	e := newMASEnv(t, mastest.Options{TokenLifetime: time.Second}, matrixtest.Options{})
	e.mas.FailNext(2, routeCreate, mastest.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Second})
	e.mas.FailNext(2, routePassword, mastest.Fault{Status: http.StatusServiceUnavailable})
	var b strings.Builder
	b.WriteString("localpart\n")
	const n = 24
	for i := range n {
		fmt.Fprintf(&b, "user%02d\n", i)
	}
	roster := e.write("team.csv", b.String())
	// The rate keeps the run longer than several token lifetimes.
	code, stderr := e.apply(1, roster, "--rate", "10", "--concurrency", "4")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	// Now an answer that is lost after MAS acted.
	e.mas.FailNext(1, routeCreate, mastest.Fault{Drop: true})
	roster2 := e.write("team2.csv", b.String()+"late\n")
	if code, stderr := e.apply(2, roster2); code != 0 {
		t.Fatalf("run 2: exit %d:\n%s", code, stderr)
	}
	creds := e.credentials(1)
	for k, v := range e.credentials(2) {
		creds[k] = v
	}
	if len(creds) != n+1 || len(e.mas.Usernames()) != n+1 {
		t.Fatalf("%d passwords handed off, %d users in MAS; want %d", len(creds), len(e.mas.Usernames()), n+1)
	}
	for id, pw := range creds {
		lp := strings.TrimSuffix(strings.TrimPrefix(id, "@"), ":example.org")
		if !e.mas.CheckPassword(lp, pw) {
			t.Errorf("%s: the handed-off password does not log in", lp)
		}
	}
	if got := e.mas.RequestCount(routeToken); got < 2 {
		t.Errorf("%d token requests in a run longer than a token's life: not renewed", got)
	}
}

// TestMASSync: --deactivate-missing deactivates the accounts provision created and
// the roster dropped, within --max-deactivate, and never one it did not create.
func TestMASSync(t *testing.T) {
	e := newMASEnv(t, mastest.Options{}, matrixtest.Options{})
	e.mas.AddUser(mastest.FakeUser{Username: "dave", Password: "dave's password"})
	all := e.write("all.csv", "localpart,email\nalice,alice@example.org\nbob,\ncarol,\n")
	if code, stderr := e.apply(1, all); code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	onlyAlice := e.write("alice.csv", "localpart,email,admin\nalice,alice@example.org,true\n")

	code, stderr := e.apply(2, onlyAlice, "--deactivate-missing", "--max-deactivate", "1")
	if code != ExitUsage || !strings.Contains(stderr, "refusing to deactivate 2 accounts") {
		t.Fatalf("over the limit: exit %d, want 2:\n%s", code, stderr)
	}
	for _, lp := range []string{"bob", "carol"} {
		if u, _ := e.mas.User(lp); u.Deactivated {
			t.Errorf("%s was deactivated by a run over --max-deactivate", lp)
		}
	}

	code, stderr = e.apply(3, onlyAlice, "--deactivate-missing", "--erase", "--update")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	for _, lp := range []string{"bob", "carol"} {
		if u, _ := e.mas.User(lp); !u.Deactivated || !u.Erased {
			t.Errorf("%s = %+v, want deactivated and erased", lp, u)
		}
	}
	if u, _ := e.mas.User("dave"); u.Deactivated {
		t.Error("dave was deactivated, and provision never created him")
	}
	if u, _ := e.mas.User("alice"); u.Deactivated || !u.Admin {
		t.Errorf("alice = %+v, want active and, with --update, admin", u)
	}
	rep := readReport(t, e.path("report-3.csv"))
	if rep["bob"][2] != "deactivated" || rep["alice"][2] != "updated" {
		t.Errorf("report = %v", rep)
	}
	if _, ok := rep["dave"]; ok {
		t.Errorf("the report names dave: %v", rep["dave"])
	}
}

// TestMASSSO: an SSO-only user gets an upstream link to the provider named by its
// human name, no password and no credentials row.
func TestMASSSO(t *testing.T) {
	e := newMASEnv(t, mastest.Options{Providers: []mastest.Provider{{HumanName: "Okta", Issuer: "https://okta.example.org"}}}, matrixtest.Options{})
	provider := e.mas.Providers()[0]
	roster := e.write("team.csv", "localpart,sso_subject\nalice,00uA\nbot,\n")
	code, stderr := e.apply(1, roster, "--sso-provider", "Okta")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	alice, ok := e.mas.User("alice")
	if !ok || alice.HasPassword {
		t.Fatalf("alice = %+v, want an account without a password", alice)
	}
	if got := e.mas.LinkedUser(provider, "00uA"); got != "alice" {
		t.Errorf("the subject 00uA at Okta is linked to %q, want alice", got)
	}
	creds := e.credentials(1)
	if _, ok := creds["@alice:example.org"]; ok || len(creds) != 1 {
		t.Errorf("credentials = %v, want only bot's", keys(creds))
	}
	if n := e.mas.RequestCount(routePassword); n != 1 {
		t.Errorf("%d set-password requests, want 1 (bot)", n)
	}
	rep := readReport(t, e.path("report-1.csv"))
	if rep["alice"][2] != "created" || rep["alice"][4] != "single sign-on only: no password" {
		t.Errorf("alice's row = %v", rep["alice"])
	}

	// A provider MAS does not have stops the run before anything is sent.
	other := e.write("other.csv", "localpart,sso_provider,sso_subject\nzoe,Keycloak,kc-1\n")
	code, stderr = e.apply(2, other)
	if code != ExitUsage || !strings.Contains(stderr, `"Keycloak" matches no upstream provider`) || !strings.Contains(stderr, provider+" (Okta)") {
		t.Errorf("unknown provider: exit %d, want 2 naming the providers MAS has:\n%s", code, stderr)
	}
	if _, ok := e.mas.User("zoe"); ok {
		t.Error("zoe was created")
	}
}

// TestMASPreflight: what stops a MAS run before the first user, with exit 2.
func TestMASPreflight(t *testing.T) {
	t.Run("client not in admin_clients", func(t *testing.T) {
		e := newMASEnv(t, mastest.Options{NotAdminClient: true}, matrixtest.Options{})
		code, stderr := e.apply(1, e.write("t.csv", "localpart\nalice\n"))
		if code != ExitUsage || !strings.Contains(stderr, "policy.data.admin_clients") {
			t.Errorf("exit %d, want 2 naming policy.data.admin_clients:\n%s", code, stderr)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		e := newMASEnv(t, mastest.Options{}, matrixtest.Options{})
		e.secretFile = e.write("wrong", "not-the-secret\n")
		code, stderr := e.apply(1, e.write("t.csv", "localpart\nalice\n"))
		if code != ExitUsage || !strings.Contains(stderr, "does not accept the client ID and secret") || !strings.Contains(stderr, "docs/mas.md") {
			t.Errorf("exit %d, want 2:\n%s", code, stderr)
		}
	})
	t.Run("passwords disabled", func(t *testing.T) {
		e := newMASEnv(t, mastest.Options{PasswordsDisabled: true}, matrixtest.Options{})
		code, stderr := e.apply(1, e.write("t.csv", "localpart\nalice\n"))
		if code != ExitUsage || !strings.Contains(stderr, "password authentication is disabled in MAS") {
			t.Errorf("exit %d, want 2:\n%s", code, stderr)
		}
		if e.mas.RequestCount(routeCreate) != 0 {
			t.Error("a user was created")
		}
	})
	t.Run("rooms without an admin token", func(t *testing.T) {
		e := newMASEnv(t, mastest.Options{}, matrixtest.Options{})
		code, stderr := e.apply(1, e.write("t.csv", "localpart,rooms\nalice,#staff:example.org\n"))
		if code != ExitUsage || !strings.Contains(stderr, "--admin-token-file") {
			t.Errorf("exit %d, want 2 naming --admin-token-file:\n%s", code, stderr)
		}
		if len(e.mas.Requests()) != 0 {
			t.Errorf("requests were sent to MAS: %v", e.mas.Requests())
		}
	})
}

// TestDelegationDetected: on a homeserver that delegates logins to MAS, the
// shared-secret and admin-token modes stop before the first user, naming MAS's
// issuer and the flags to use.
func TestDelegationDetected(t *testing.T) {
	e := newMASEnv(t, mastest.Options{}, matrixtest.Options{SharedSecret: "s3cret", AdminToken: cliAdminToken})
	roster := e.write("t.csv", "localpart\nalice\n")
	common := []string{"--homeserver", e.hsURL, "--recipient", e.id.Recipient().String(), "--journal", e.path("j"),
		"--credentials", e.path("c.age"), "--report", e.path("r.csv")}
	for name, flags := range map[string][]string{
		"shared secret": {"--shared-secret-file", e.write("secret", "s3cret\n")},
		"admin token":   {"--admin-token-file", e.write("token", cliAdminToken+"\n")},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := e.provision(append(append(common, flags...), roster)...)
			if code != ExitUsage {
				t.Errorf("exit %d, want 2:\n%s", code, stderr)
			}
			for _, w := range []string{masIssuer, "--mas URL", "--mas-client-id", "--mas-client-secret-file"} {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr)
				}
			}
			if c := e.hs.Counts(); c.Registrations != 0 || c.Requests["PUT /_synapse/admin/v2/users/{userID}"] != 0 {
				t.Errorf("something was sent to create a user: %v", c.Requests)
			}
		})
	}
}

// TestSynapseSSO: on Synapse's admin API an SSO user is created with its external ID
// and provision's marker in one list, no password; the SSO login lands on it; a
// second account with the same identity is a failed row with Synapse's errcode.
func TestSynapseSSO(t *testing.T) {
	e := newAdminEnv(t, matrixtest.Options{})
	e.srv.AddUser(matrixtest.FakeUser{Localpart: "olduser", ExternalIDs: []matrix.ExternalID{{AuthProvider: "oidc-okta", ExternalID: "00uTaken"}}}, "pw-of-olduser")
	roster := e.write("team.csv", "localpart,displayname,sso_provider,sso_subject\n"+
		"alice,Alice,oidc-okta,00uA\nbob,Bob,oidc-okta,00uTaken\n")
	code, stderr := e.apply(1, roster)
	if code != ExitFailed {
		t.Fatalf("exit %d, want 1 (bob fails):\n%s", code, stderr)
	}
	alice, _ := e.srv.User("alice")
	want := []matrix.ExternalID{reconcile.Marker("@alice:example.org"), {AuthProvider: "oidc-okta", ExternalID: "00uA"}}
	if alice.HasPassword || !sameIDs(alice.ExternalIDs, want) {
		t.Errorf("alice = %+v, want no password and external IDs %v", alice, want)
	}
	if id, ok := e.srv.SSOLogin("oidc-okta", "00uA"); !ok || id != "@alice:example.org" {
		t.Errorf("SSO login lands on %q, want alice", id)
	}
	if _, err := os.Stat(e.path("credentials-1.age")); err == nil {
		t.Errorf("credentials were handed off for SSO users: %v", keys(e.credentials(1)))
	}
	rep := readReport(t, e.path("report-1.csv"))
	if rep["alice"][2] != "created" || rep["alice"][4] != "single sign-on only: no password" {
		t.Errorf("alice's row = %v", rep["alice"])
	}
	if rep["bob"][2] != "failed" || rep["bob"][3] != "M_UNKNOWN" || !strings.Contains(rep["bob"][4], "External id is already in use") {
		t.Errorf("bob's row = %v", rep["bob"])
	}
	if !strings.Contains(stderr, "another account is already bound to this person's single sign-on identity") {
		t.Errorf("no hint for bob:\n%s", stderr)
	}
	if id, _ := e.srv.SSOLogin("oidc-okta", "00uTaken"); id != "@olduser:example.org" {
		t.Errorf("the taken identity now lands on %q", id)
	}
}

func sameIDs(a, b []matrix.ExternalID) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	cmp := func(x, y matrix.ExternalID) int {
		return strings.Compare(x.AuthProvider+"\x00"+x.ExternalID, y.AuthProvider+"\x00"+y.ExternalID)
	}
	slices.SortFunc(a, cmp)
	slices.SortFunc(b, cmp)
	return slices.Equal(a, b)
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestMASRoomsThroughSynapse: with --mas and a Synapse admin token, the accounts are
// made in MAS and joined to their rooms (and given their display names) through
// Synapse's admin API, once MAS has provisioned them on the homeserver; --update
// joins a room added later; a rerun changes nothing.
func TestMASRoomsThroughSynapse(t *testing.T) {
	const token = "syt_mas_rooms_admin_token"
	var hs *matrixtest.Server
	e := newMASEnv(t, mastest.Options{OnUserCreated: func(username string) {
		// MAS provisions every account it creates on the homeserver (ProvisionUserJob).
		hs.AddUser(matrixtest.FakeUser{Localpart: username}, "")
	}}, matrixtest.Options{AdminToken: token})
	hs = e.hs
	hs.AddRoom("!general:example.org", "#general:example.org")
	hs.AddRoom("!ops:example.org", "")
	tokenFile := e.write("admin-token", token+"\n")
	roster := e.write("team.csv", "localpart,displayname,rooms\nalice,Alice Martin,#general:example.org\nbob,Bob,\n")

	args := append(e.args(1), "--admin-token-file", tokenFile, roster)
	if code, _, stderr := e.provision(args...); code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	if got := hs.Members("!general:example.org"); !slices.Contains(got, hs.UserID("alice")) || slices.Contains(got, hs.UserID("bob")) {
		t.Errorf("#general members = %v, want alice only", got)
	}
	creds := e.credentials(1)
	if !e.mas.CheckPassword("alice", creds["@alice:example.org"]) {
		t.Error("alice's handed-off password does not log in")
	}

	// A display name changed in the roster reaches Synapse's profile with --update.
	e.write("team.csv", "localpart,displayname,rooms\nalice,Alice M. Martin,#general:example.org\nbob,Bob,\n")
	if code, _, stderr := e.provision(append(e.args(9), "--admin-token-file", tokenFile, "--update", roster)...); code != 0 {
		t.Fatalf("--update: exit %d:\n%s", code, stderr)
	}
	if u, _ := hs.User("alice"); u.DisplayName != "Alice M. Martin" {
		t.Errorf("alice's display name on Synapse = %q, want the roster's", u.DisplayName)
	}

	// Ops is added to bob's row: --update joins him; a second --update changes nothing.
	e.write("team.csv", "localpart,displayname,rooms\nalice,Alice Martin,#general:example.org\nbob,Bob,!ops:example.org\n")
	for n := 2; n <= 3; n++ {
		args := append(e.args(n), "--admin-token-file", tokenFile, "--update", roster)
		if code, _, stderr := e.provision(args...); code != 0 {
			t.Fatalf("--update run %d: exit %d:\n%s", n, code, stderr)
		}
	}
	if got := hs.Members("!ops:example.org"); !slices.Equal(got, []string{hs.UserID("bob")}) {
		t.Errorf("ops members = %v, want bob", got)
	}
	if rep := readReport(t, e.path("report-3.csv")); rep["bob"][2] == "updated" || rep["alice"][2] == "updated" {
		t.Errorf("the second --update changed something again: %v", rep)
	}
}
