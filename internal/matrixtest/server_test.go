package matrixtest_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provision-matrix/provision/internal/matrixtest"
)

// These tests speak raw HTTP, so that the fake's behaviour is checked
// independently of the matrix package that is tested against it.

const secret = "fake-secret"

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func (a answer) str(key string) string { s, _ := a.body[key].(string); return s }

func call(t *testing.T, srv *matrixtest.Server, method, path, token string, body any) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	_ = json.Unmarshal(data, &a.body)
	return a
}

func mac(key, nonce, user, pw string, admin bool, userType string) string {
	m := hmac.New(sha1.New, []byte(key))
	adm := "notadmin"
	if admin {
		adm = "admin"
	}
	m.Write([]byte(nonce + "\x00" + user + "\x00" + pw + "\x00" + adm))
	if userType != "" {
		m.Write([]byte("\x00" + userType))
	}
	return hex.EncodeToString(m.Sum(nil))
}

func nonce(t *testing.T, srv *matrixtest.Server) string {
	t.Helper()
	a := call(t, srv, "GET", "/_synapse/admin/v1/register", "", nil)
	if a.status != 200 || a.str("nonce") == "" {
		t.Fatalf("nonce: %d %v", a.status, a.body)
	}
	return a.str("nonce")
}

func register(t *testing.T, srv *matrixtest.Server, n, user, pw, userType string, extra map[string]any) answer {
	t.Helper()
	body := map[string]any{"nonce": n, "username": user, "password": pw, "mac": mac(secret, n, user, pw, false, userType)}
	if userType != "" {
		body["user_type"] = userType
	}
	for k, v := range extra {
		body[k] = v
	}
	return call(t, srv, "POST", "/_synapse/admin/v1/register", "", body)
}

func want(t *testing.T, a answer, status int, errcode string) {
	t.Helper()
	if a.status != status || a.str("errcode") != errcode {
		t.Errorf("got %d %v, want %d %s", a.status, a.body, status, errcode)
	}
}

func TestSynapseNonces(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv := matrixtest.NewServer(t, matrixtest.Options{SharedSecret: secret, Clock: clock})

	// Spent by the first POST even though it fails.
	n := nonce(t, srv)
	want(t, register(t, srv, n, "al!ce", "pw", "", nil), 400, "M_INVALID_USERNAME")
	a := register(t, srv, n, "alice", "pw", "", nil)
	want(t, a, 400, "M_UNKNOWN")
	if a.str("error") != "unrecognised nonce" {
		t.Errorf("error = %q", a.str("error"))
	}
	// A bad MAC spends it too.
	n = nonce(t, srv)
	bad := call(t, srv, "POST", "/_synapse/admin/v1/register", "", map[string]any{"nonce": n, "username": "alice", "password": "pw", "mac": "00"})
	want(t, bad, 403, "M_UNKNOWN")
	want(t, register(t, srv, n, "alice", "pw", "", nil), 400, "M_UNKNOWN")

	// 60 s, counted in whole seconds.
	n = nonce(t, srv)
	mu.Lock()
	now = now.Add(60 * time.Second)
	mu.Unlock()
	want(t, register(t, srv, n, "alice", "pw", "", map[string]any{"inhibit_login": true}), 200, "")
	n = nonce(t, srv)
	mu.Lock()
	now = now.Add(61 * time.Second)
	mu.Unlock()
	want(t, register(t, srv, n, "bob", "pw", "", nil), 400, "M_UNKNOWN")

	// A restart forgets every nonce.
	n = nonce(t, srv)
	srv.Restart()
	srv.Client().CloseIdleConnections() // the restart closed them: don't POST on a dead one
	want(t, register(t, srv, n, "bob", "pw", "", nil), 400, "M_UNKNOWN")
}

func TestDendriteNonces(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv := matrixtest.NewServer(t, matrixtest.Options{Dialect: matrixtest.Dendrite, SharedSecret: secret, Clock: clock})

	// Not consumed: one nonce serves several registrations for 5 minutes.
	n := nonce(t, srv)
	want(t, register(t, srv, n, "alice", "password1", "", nil), 200, "")
	want(t, register(t, srv, n, "bob", "password1", "", nil), 200, "")
	mu.Lock()
	now = now.Add(5*time.Minute + time.Second)
	mu.Unlock()
	a := register(t, srv, n, "carol", "password1", "", nil)
	if a.status != 500 || a.str("errcode") != "" || !strings.Contains(a.str("message"), "nonce") {
		t.Errorf("expired nonce: %d %v, want a bare 500 message", a.status, a.body)
	}
}

func TestRegisterDialects(t *testing.T) {
	t.Parallel()
	type tc struct {
		name     string
		dialect  matrixtest.Dialect
		user, pw string
		userType string
		extra    map[string]any
		status   int
		errcode  string
		check    func(t *testing.T, srv *matrixtest.Server, a answer)
	}
	hasSession := func(want bool) func(t *testing.T, srv *matrixtest.Server, a answer) {
		return func(t *testing.T, srv *matrixtest.Server, a answer) {
			if got := a.str("access_token") != ""; got != want {
				t.Errorf("access_token present = %v, want %v: %v", got, want, a.body)
			}
			lp := strings.TrimPrefix(strings.Split(a.str("user_id"), ":")[0], "@")
			if u, _ := srv.User(lp); (u.Devices == 1) != want {
				t.Errorf("devices = %d", u.Devices)
			}
		}
	}
	tests := []tc{
		{name: "synapse honours inhibit_login", user: "alice", pw: "pw", extra: map[string]any{"inhibit_login": true}, status: 200, check: hasSession(false)},
		{name: "synapse logs in without it", user: "alice", pw: "pw", status: 200, check: hasSession(true)},
		{name: "dendrite ignores inhibit_login", dialect: matrixtest.Dendrite, user: "alice", pw: "password1",
			extra: map[string]any{"inhibit_login": true}, status: 200, check: hasSession(true)},
		{name: "synapse lowercases", user: "Xsix", pw: "pw", status: 200, check: func(t *testing.T, srv *matrixtest.Server, a answer) {
			if a.str("user_id") != "@xsix:example.org" || a.str("home_server") != "example.org" {
				t.Errorf("answer %v", a.body)
			}
		}},
		{name: "dendrite lowercases", dialect: matrixtest.Dendrite, user: "Xsix", pw: "password1", status: 200,
			check: func(t *testing.T, srv *matrixtest.Server, a answer) {
				if a.str("user_id") != "@xsix:localhost" || a.str("device_id") != "shared_secret_registration" {
					t.Errorf("answer %v", a.body)
				}
			}},
		{name: "synapse: taken, any case", user: "TAKEN", pw: "pw", status: 400, errcode: "M_USER_IN_USE"},
		{name: "dendrite: taken", dialect: matrixtest.Dendrite, user: "Taken", pw: "password1", status: 400, errcode: "M_USER_IN_USE"},
		{name: "synapse: user type in the MAC", user: "bot", pw: "pw", userType: "bot", status: 200},
		{name: "dendrite: user type breaks the MAC", dialect: matrixtest.Dendrite, user: "bot", pw: "password1", userType: "bot", status: 403, errcode: "M_FORBIDDEN"},
		{name: "synapse: no password policy here", user: "weak", pw: "1", status: 200},
		{name: "dendrite: < 8 characters", dialect: matrixtest.Dendrite, user: "weak", pw: "1234567", status: 400, errcode: "M_WEAK_PASSWORD"},
		{name: "synapse: password > 512", user: "long", pw: strings.Repeat("x", 513), status: 400, errcode: "M_UNKNOWN"},
		{name: "dendrite: password > 512", dialect: matrixtest.Dendrite, user: "long", pw: strings.Repeat("x", 513), status: 400, errcode: "M_BAD_JSON"},
		{name: "synapse: NUL in password", user: "nul", pw: "a\x00b", status: 400, errcode: "M_UNKNOWN"},
		{name: "dendrite: NUL in password", dialect: matrixtest.Dendrite, user: "nul", pw: "a\x00bcdefghi", status: 500},
		{name: "synapse: leading underscore", user: "_x", pw: "pw", status: 400, errcode: "M_INVALID_USERNAME"},
		{name: "dendrite: too long", dialect: matrixtest.Dendrite, user: strings.Repeat("a", 250), pw: "password1", status: 400, errcode: "M_BAD_JSON"},
		{name: "synapse: too long", user: strings.Repeat("a", 250), pw: "pw", status: 400, errcode: "M_INVALID_USERNAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := matrixtest.NewServer(t, matrixtest.Options{Dialect: tt.dialect, SharedSecret: secret})
			srv.AddUser(matrixtest.FakeUser{Localpart: "taken"}, "")
			a := register(t, srv, nonce(t, srv), tt.user, tt.pw, tt.userType, tt.extra)
			want(t, a, tt.status, tt.errcode)
			if tt.check != nil {
				tt.check(t, srv, a)
			}
			wantReg := 0
			if tt.status == 200 {
				wantReg = 1
			}
			if n := srv.Counts().Registrations; n != wantReg {
				t.Errorf("registrations = %d, want %d", n, wantReg)
			}
		})
	}
}

func TestSharedSecretNotConfigured(t *testing.T) {
	t.Parallel()
	syn := matrixtest.NewServer(t, matrixtest.Options{})
	n := nonce(t, syn) // Synapse hands out nonces regardless
	a := register(t, syn, n, "alice", "pw", "", nil)
	want(t, a, 400, "M_UNKNOWN")
	if a.str("error") != "Shared secret registration is not enabled" {
		t.Errorf("error = %q", a.str("error"))
	}
	den := matrixtest.NewServer(t, matrixtest.Options{Dialect: matrixtest.Dendrite})
	want(t, call(t, den, "GET", "/_synapse/admin/v1/register", "", nil), 404, "M_UNRECOGNIZED")
}

func TestAuth(t *testing.T) {
	t.Parallel()
	srv := matrixtest.NewServer(t, matrixtest.Options{AdminToken: "admintok"})
	srv.AddUser(matrixtest.FakeUser{Localpart: "alice"}, "pw")
	userTok := srv.NewSession("alice")
	path := "/_synapse/admin/v2/users/@alice:example.org"
	want(t, call(t, srv, "GET", path, "", nil), 401, "M_MISSING_TOKEN")
	a := call(t, srv, "GET", path, "nope", nil)
	want(t, a, 401, "M_UNKNOWN_TOKEN")
	if sl, ok := a.body["soft_logout"].(bool); !ok || sl {
		t.Errorf("soft_logout = %v", a.body["soft_logout"])
	}
	a = call(t, srv, "GET", path, userTok, nil)
	want(t, a, 403, "M_FORBIDDEN")
	if a.str("error") != "You are not a server admin" {
		t.Errorf("error = %q", a.str("error"))
	}
	want(t, call(t, srv, "GET", path+"?access_token=admintok", "admintok", nil), 401, "M_MISSING_TOKEN")
	want(t, call(t, srv, "GET", path+"?access_token=admintok", "", nil), 200, "")
	want(t, call(t, srv, "GET", "/_synapse/admin/v2/users/@nobody:example.org", "admintok", nil), 404, "M_NOT_FOUND")
}

func TestUnknownPaths(t *testing.T) {
	t.Parallel()
	den := matrixtest.NewServer(t, matrixtest.Options{Dialect: matrixtest.Dendrite, AdminToken: "tok", SharedSecret: secret})
	// Seen on Dendrite v0.13.8: the Synapse admin API does not exist there.
	for _, p := range []string{"/_synapse/admin/v2/users/@x:localhost", "/_synapse/admin/v1/server_version",
		"/_matrix/client/v3/password_policy", "/nonexistent"} {
		want(t, call(t, den, "GET", p, "tok", nil), 404, "M_UNRECOGNIZED")
	}
	want(t, call(t, den, "PUT", "/_synapse/admin/v1/register", "", map[string]any{}), 405, "M_UNRECOGNIZED")
	proxied := matrixtest.NewServer(t, matrixtest.Options{NoAdminAPI: true, AdminToken: "tok"})
	a := call(t, proxied, "GET", "/_synapse/admin/v2/users/@x:example.org", "tok", nil)
	if a.status != 404 || a.body != nil {
		t.Errorf("behind a proxy: %d %v, want a non-JSON 404", a.status, a.body)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	srv := matrixtest.NewServer(t, matrixtest.Options{
		Faults: matrixtest.FaultN(2, matrixtest.Fault{Status: 429, Errcode: "M_LIMIT_EXCEEDED", RetryAfterMs: 1500, RetryAfterHeader: true},
			matrixtest.Route("GET", "/_matrix/client/versions")),
	})
	for range 2 {
		a := call(t, srv, "GET", "/_matrix/client/versions", "", nil)
		want(t, a, 429, "M_LIMIT_EXCEEDED")
		if a.body["retry_after_ms"] != 1500.0 || a.header.Get("Retry-After") != "2" {
			t.Errorf("429: %v, Retry-After %q", a.body, a.header.Get("Retry-After"))
		}
	}
	want(t, call(t, srv, "GET", "/_matrix/client/versions", "", nil), 200, "")
	c := srv.Counts()
	if c.RateLimited != 2 || c.Faults != 2 || c.Requests["GET /_matrix/client/versions"] != 3 {
		t.Errorf("counts = %+v", c)
	}
}

func TestDropResponseCreatesTheAccount(t *testing.T) {
	t.Parallel()
	srv := matrixtest.NewServer(t, matrixtest.Options{SharedSecret: secret,
		Faults: matrixtest.FaultN(1, matrixtest.Fault{DropResponse: true}, matrixtest.Route("POST", "/_synapse/admin/v1/register"))})
	n := nonce(t, srv)
	body := map[string]any{"nonce": n, "username": "alice", "password": "pw", "mac": mac(secret, n, "alice", "pw", false, "")}
	raw, _ := json.Marshal(body)
	resp, err := srv.Client().Post(srv.URL()+"/_synapse/admin/v1/register", "application/json", bytes.NewReader(raw))
	if err == nil {
		resp.Body.Close()
		t.Fatal("an answer came back")
	}
	if _, ok := srv.User("alice"); !ok {
		t.Error("the account was not created")
	}
}

func TestAdminPut(t *testing.T) {
	t.Parallel()
	srv := matrixtest.NewServer(t, matrixtest.Options{AdminToken: "tok"})
	path := "/_synapse/admin/v2/users/@alice:example.org"
	a := call(t, srv, "PUT", path, "tok", map[string]any{"password": "pw1", "displayname": "Alice"})
	want(t, a, 201, "")
	if a.str("name") != "@alice:example.org" || a.str("displayname") != "Alice" {
		t.Errorf("created: %v", a.body)
	}
	want(t, call(t, srv, "PUT", path, "tok", map[string]any{"admin": "yes"}), 400, "M_BAD_JSON")
	want(t, call(t, srv, "PUT", path, "tok", map[string]any{"deactivated": true, "locked": true}), 400, "M_UNKNOWN")
	want(t, call(t, srv, "PUT", path, "tok", map[string]any{"user_type": "robot"}), 400, "M_UNKNOWN")
	want(t, call(t, srv, "PUT", "/_synapse/admin/v2/users/@admin:example.org", "tok", map[string]any{"admin": false}), 400, "M_UNKNOWN")
	want(t, call(t, srv, "PUT", path, "tok", map[string]any{"deactivated": true}), 200, "")
	if u, _ := srv.User("alice"); !u.Deactivated || u.HasPassword {
		t.Errorf("after deactivation: %+v", u)
	}
}
