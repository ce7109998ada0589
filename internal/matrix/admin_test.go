package matrix_test

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
)

func newAdmin(t *testing.T, o matrixtest.Options) (*matrixtest.Server, *matrix.Admin) {
	t.Helper()
	if o.AdminToken == "" {
		o.AdminToken = testAdminToken
	}
	srv, c := newServer(t, o)
	return srv, c.Admin([]byte(testAdminToken))
}

func ptr[T any](v T) *T { return &v }

func TestAdminPutGetUser(t *testing.T) {
	t.Parallel()
	srv, a := newAdmin(t, matrixtest.Options{})
	id := srv.UserID("alice")

	created, err := a.PutUser(t.Context(), id, matrix.PutUser{
		Password:    ptr(testPassword),
		DisplayName: ptr("Alice"),
		ThreePIDs:   &[]matrix.ThreePID{{Medium: "email", Address: "Alice@Example.org"}},
		ExternalIDs: &[]matrix.ExternalID{{AuthProvider: "oidc", ExternalID: "a-1"}},
		UserType:    ptr("bot"),
	})
	if err != nil || !created {
		t.Fatalf("PutUser (create) = %v, %v; want true", created, err)
	}
	if !srv.CheckPassword("alice", testPassword) {
		t.Error("the password was not set")
	}
	got, err := a.GetUser(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	want := matrix.AdminUser{UserID: id, DisplayName: "Alice", UserType: "bot",
		ThreePIDs:   []matrix.ThreePID{{Medium: "email", Address: "alice@example.org"}},
		ExternalIDs: []matrix.ExternalID{{AuthProvider: "oidc", ExternalID: "a-1"}}}
	got.CreationTS = 0
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("GetUser =\n%+v, want\n%+v", got, want)
	}

	// Modify without a password: nothing else changes, sessions survive.
	session := srv.NewSession("alice")
	created, err = a.PutUser(t.Context(), id, matrix.PutUser{DisplayName: ptr("Alice L."), UserType: ptr(""), ThreePIDs: &[]matrix.ThreePID{}})
	if err != nil || created {
		t.Fatalf("PutUser (modify) = %v, %v; want false", created, err)
	}
	u, _ := srv.User("alice")
	if u.DisplayName != "Alice L." || u.UserType != "" || len(u.ThreePIDs) != 0 || u.Devices != 1 || !srv.CheckPassword("alice", testPassword) {
		t.Errorf("after modify: %+v", u)
	}

	// The hazard: a password on an existing account logs out every device,
	// unless asked not to.
	if _, err := a.PutUser(t.Context(), id, matrix.PutUser{Password: ptr("new-password-1"), LogoutDevices: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	if u, _ := srv.User("alice"); u.Devices != 1 {
		t.Errorf("devices after a reset with logout_devices false: %d, want 1", u.Devices)
	}
	if _, err := a.PutUser(t.Context(), id, matrix.PutUser{Password: ptr("new-password-2")}); err != nil {
		t.Fatal(err)
	}
	if u, _ := srv.User("alice"); u.Devices != 0 || !srv.CheckPassword("alice", "new-password-2") {
		t.Errorf("after a reset: %+v", u)
	}
	if err := c(srv).Logout(t.Context(), session); matrix.Status(err) != http.StatusUnauthorized {
		t.Errorf("the old session still works: %v", err)
	}
}

func c(srv *matrixtest.Server) *matrix.Client {
	cl, err := matrix.NewClient(srv.URL(), srv.Client())
	if err != nil {
		panic(err)
	}
	return cl
}

func TestAdminPutUserRefused(t *testing.T) {
	t.Parallel()
	srv, a := newAdmin(t, matrixtest.Options{})
	srv.AddUser(matrixtest.FakeUser{Localpart: "bob", ExternalIDs: []matrix.ExternalID{{AuthProvider: "oidc", ExternalID: "b-1"}}}, "")
	srv.AddUser(matrixtest.FakeUser{Localpart: "carol"}, "")
	tests := []struct {
		name    string
		userID  string
		put     matrix.PutUser
		status  int
		errcode string
	}{
		{"uppercase is not lowercased", "@Dave:example.org", matrix.PutUser{}, 400, "M_INVALID_USERNAME"},
		{"external ID of another user, on create", "@erin:example.org",
			matrix.PutUser{ExternalIDs: &[]matrix.ExternalID{{AuthProvider: "oidc", ExternalID: "b-1"}}}, 409, "M_UNKNOWN"},
		{"external ID of another user, on modify", "@carol:example.org",
			matrix.PutUser{ExternalIDs: &[]matrix.ExternalID{{AuthProvider: "oidc", ExternalID: "b-1"}}}, 409, "M_UNKNOWN"},
		{"remote user", "@frank:elsewhere.example", matrix.PutUser{}, 400, "M_UNKNOWN"},
		{"bad medium", "@carol:example.org", matrix.PutUser{ThreePIDs: &[]matrix.ThreePID{{Medium: "fax", Address: "1"}}}, 400, "M_INVALID_PARAM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.PutUser(t.Context(), tt.userID, tt.put)
			if matrix.Status(err) != tt.status || matrix.Errcode(err) != tt.errcode {
				t.Fatalf("PutUser: %v, want %d %s", err, tt.status, tt.errcode)
			}
			assertKind(t, err, matrix.Refused)
			if errors.Is(err, matrix.ErrNoAdminAPI) || errors.Is(err, matrix.ErrNotFound) {
				t.Errorf("error %v misclassified", err)
			}
			assertNoSecrets(t, err, testAdminToken)
		})
	}
	// Synapse creates the account before it records external IDs: the 409
	// leaves it behind.
	if _, ok := srv.User("erin"); !ok {
		t.Error("the account created before the 409 is missing")
	}
}

// A localpart may contain '/', and a room alias starts with '#': both must be
// escaped as one path segment.
func TestAdminPathEscaping(t *testing.T) {
	t.Parallel()
	srv, a := newAdmin(t, matrixtest.Options{})
	id := srv.UserID("team/ops")
	if created, err := a.PutUser(t.Context(), id, matrix.PutUser{}); err != nil || !created {
		t.Fatalf("PutUser(%s) = %v, %v", id, created, err)
	}
	if _, ok := srv.User("team/ops"); !ok {
		t.Fatalf("no account team/ops: %v", srv.Users())
	}
	srv.AddRoom("!room:example.org", "#general:example.org")
	for _, room := range []string{"#general:example.org", "!room:example.org"} {
		roomID, err := a.Join(t.Context(), room, id)
		if err != nil || roomID != "!room:example.org" {
			t.Errorf("Join(%s) = %q, %v", room, roomID, err)
		}
	}
	if got := srv.Members("!room:example.org"); !slices.Equal(got, []string{id}) {
		t.Errorf("members = %v", got)
	}
}

func TestAdminNotFound(t *testing.T) {
	t.Parallel()
	srv, a := newAdmin(t, matrixtest.Options{})
	srv.AddUser(matrixtest.FakeUser{Localpart: "alice"}, "")
	srv.AddRoom("!room:example.org", "")
	tests := []struct {
		name     string
		call     func() error
		notFound bool
	}{
		{"get absent user", func() error { _, err := a.GetUser(t.Context(), srv.UserID("nobody")); return err }, true},
		{"deactivate absent user", func() error { return a.Deactivate(t.Context(), srv.UserID("nobody"), false) }, true},
		{"join absent user", func() error { _, err := a.Join(t.Context(), "!room:example.org", srv.UserID("nobody")); return err }, true},
		{"join unknown alias", func() error { _, err := a.Join(t.Context(), "#nowhere:example.org", srv.UserID("alice")); return err }, true},
		// Synapse's 404 M_UNKNOWN "No known servers": not ErrNotFound, and
		// above all not "no admin API".
		{"join unknown room ID", func() error { _, err := a.Join(t.Context(), "!nowhere:example.org", srv.UserID("alice")); return err }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if matrix.Status(err) != http.StatusNotFound {
				t.Fatalf("error %v, want a 404", err)
			}
			if errors.Is(err, matrix.ErrNotFound) != tt.notFound {
				t.Errorf("errors.Is(%v, ErrNotFound) = %v, want %v", err, !tt.notFound, tt.notFound)
			}
			if errors.Is(err, matrix.ErrNoAdminAPI) {
				t.Errorf("error %v taken for a missing admin API", err)
			}
			assertKind(t, err, matrix.Refused)
		})
	}
}

// Every admin method against a server without the admin API fails with
// ErrNoAdminAPI, never ErrNotFound; the run must stop, not skip users.
func TestAdminNoAdminAPI(t *testing.T) {
	t.Parallel()
	for _, o := range []matrixtest.Options{
		{Dialect: matrixtest.Dendrite, SharedSecret: testSecret},
		{NoAdminAPI: true, SharedSecret: testSecret},
	} {
		name := o.Dialect.String()
		if o.NoAdminAPI {
			name += " behind a proxy"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, a := newAdmin(t, o)
			id := srv.UserID("alice")
			calls := map[string]func() error{
				"Probe":   func() error { return a.Probe(t.Context()) },
				"GetUser": func() error { _, err := a.GetUser(t.Context(), id); return err },
				"PutUser": func() error {
					_, err := a.PutUser(t.Context(), id, matrix.PutUser{Password: ptr(testPassword)})
					return err
				},
				"ListUsers": func() error {
					_, _, err := a.ListUsers(t.Context(), "", 10)
					return err
				},
				"Deactivate":        func() error { return a.Deactivate(t.Context(), id, false) },
				"Join":              func() error { _, err := a.Join(t.Context(), "!r:x", id); return err },
				"UsernameAvailable": func() error { _, err := a.UsernameAvailable(t.Context(), "alice"); return err },
			}
			for name, call := range calls {
				err := call()
				assertIs(t, err, matrix.ErrNoAdminAPI)
				assertKind(t, err, matrix.Permanent)
				if errors.Is(err, matrix.ErrNotFound) {
					t.Errorf("%s: %v is also ErrNotFound", name, err)
				}
				if !strings.Contains(err.Error(), "Synapse") {
					t.Errorf("%s: error %q gives no hint", name, err)
				}
				assertNoSecrets(t, err, testAdminToken, testPassword)
			}
			// The shared-secret endpoint is still there.
			if err := c(srv).ProbeSharedSecret(t.Context()); err != nil {
				t.Errorf("ProbeSharedSecret: %v", err)
			}
		})
	}
}

func TestAdminTokenProblems(t *testing.T) {
	t.Parallel()
	srv, c := newServer(t, matrixtest.Options{AdminToken: testAdminToken})
	srv.AddUser(matrixtest.FakeUser{Localpart: "alice"}, "")
	userToken := srv.NewSession("alice")
	tests := []struct {
		name    string
		token   string
		want    error
		errcode string
	}{
		{"no token", "", matrix.ErrBadToken, "M_MISSING_TOKEN"},
		{"unknown token", "syt_not_a_token", matrix.ErrBadToken, "M_UNKNOWN_TOKEN"},
		{"not an admin", userToken, matrix.ErrNotAdmin, "M_FORBIDDEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := c.Admin([]byte(tt.token))
			for _, err := range []error{
				a.Probe(t.Context()),
				func() error { _, err := a.GetUser(t.Context(), srv.UserID("alice")); return err }(),
				func() error { _, _, err := a.ListUsers(t.Context(), "", 0); return err }(),
			} {
				assertIs(t, err, tt.want)
				assertKind(t, err, matrix.Permanent)
				if got := matrix.Errcode(err); got != tt.errcode {
					t.Errorf("errcode %q, want %q", got, tt.errcode)
				}
				assertNoSecrets(t, err, tt.token)
			}
		})
	}
	if err := c.Admin([]byte(testAdminToken)).Probe(t.Context()); err != nil {
		t.Errorf("Probe with the admin token: %v", err)
	}
}

func TestAdminListUsers(t *testing.T) {
	t.Parallel()
	srv, a := newAdmin(t, matrixtest.Options{})
	srv.AddUser(matrixtest.FakeUser{Localpart: "dora", Deactivated: true}, "")
	srv.AddUser(matrixtest.FakeUser{Localpart: "bob", Locked: true}, "")
	srv.AddUser(matrixtest.FakeUser{Localpart: "carl", UserType: "bot"}, "")
	srv.AddUser(matrixtest.FakeUser{Localpart: "abe"}, "")
	var names []string
	from, pages := "", 0
	for {
		users, next, err := a.ListUsers(t.Context(), from, 2)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, u := range users {
			names = append(names, u.UserID)
			if u.UserID == srv.UserID("dora") && !u.Deactivated || u.UserID == srv.UserID("bob") && !u.Locked {
				t.Errorf("flags lost: %+v", u)
			}
		}
		if next == "" {
			break
		}
		from = next
	}
	want := []string{srv.UserID("abe"), srv.UserID("admin"), srv.UserID("bob"), srv.UserID("carl"), srv.UserID("dora")}
	if !slices.Equal(names, want) || pages != 3 {
		t.Errorf("listed %v in %d pages, want %v in 3", names, pages, want)
	}
}

func TestAdminDeactivate(t *testing.T) {
	t.Parallel()
	srv, a := newAdmin(t, matrixtest.Options{})
	srv.AddUser(matrixtest.FakeUser{Localpart: "alice", Devices: 2, DisplayName: "Alice"}, testPassword)
	if err := a.Deactivate(t.Context(), srv.UserID("alice"), true); err != nil {
		t.Fatal(err)
	}
	u, _ := srv.User("alice")
	if !u.Deactivated || !u.Erased || u.Devices != 0 || u.HasPassword || u.DisplayName != "" {
		t.Errorf("after deactivation: %+v", u)
	}
	// Synapse removes the password hash: the login fails like a wrong password.
	_, err := c(srv).Login(t.Context(), "alice", testPassword)
	if matrix.Errcode(err) != "M_FORBIDDEN" {
		t.Errorf("login after deactivation: %v", err)
	}
}

func TestAdminUsernameAvailable(t *testing.T) {
	t.Parallel()
	srv, a := newAdmin(t, matrixtest.Options{})
	srv.AddUser(matrixtest.FakeUser{Localpart: "alice"}, "")
	tests := []struct {
		localpart string
		want      matrix.Availability
		errcode   string
	}{
		{"zoe", matrix.Available, ""},
		{"alice", matrix.Taken, ""},
		{"Alice", matrix.Unknown, "M_INVALID_USERNAME"},
		{"_zoe", matrix.Unknown, "M_INVALID_USERNAME"},
	}
	for _, tt := range tests {
		got, err := a.UsernameAvailable(t.Context(), tt.localpart)
		if got != tt.want || matrix.Errcode(err) != tt.errcode || (err == nil) != (tt.errcode == "") {
			t.Errorf("UsernameAvailable(%q) = %v, %v; want %v, %q", tt.localpart, got, err, tt.want, tt.errcode)
		}
	}
}

func TestAdminServerErrors(t *testing.T) {
	t.Parallel()
	srv, a := newAdmin(t, matrixtest.Options{Faults: matrixtest.FaultN(2, matrixtest.Fault{Status: 502},
		func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/_synapse/admin/v2/users/") })})
	id := srv.UserID("alice")
	_, err := a.PutUser(t.Context(), id, matrix.PutUser{Password: ptr(testPassword)})
	assertKind(t, err, matrix.Retry)
	if !matrix.MayHaveLanded(err) {
		t.Errorf("PUT 502: MayHaveLanded = false")
	}
	_, err = a.GetUser(t.Context(), id)
	assertKind(t, err, matrix.Retry)
	if matrix.MayHaveLanded(err) {
		t.Errorf("GET 502: MayHaveLanded = true for a read")
	}
}
