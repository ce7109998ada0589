package matrix_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
)

func TestLoginLogout(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			srv, c := newServer(t, matrixtest.Options{Dialect: d})
			srv.AddUser(matrixtest.FakeUser{Localpart: "alice"}, testPassword)

			tok, err := c.Login(t.Context(), srv.UserID("alice"), testPassword)
			if err != nil {
				t.Fatal(err)
			}
			if me, err := c.Admin([]byte(tok)).WhoAmI(t.Context()); err != nil || me != srv.UserID("alice") {
				t.Errorf("WhoAmI = %q, %v", me, err)
			}
			if u, _ := srv.User("alice"); u.Devices != 1 {
				t.Errorf("devices after login = %d, want 1", u.Devices)
			}
			if err := c.Logout(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			if u, _ := srv.User("alice"); u.Devices != 0 {
				t.Errorf("devices after logout = %d, want 0", u.Devices)
			}
			err = c.Logout(t.Context(), tok)
			if matrix.Status(err) != http.StatusUnauthorized || matrix.Errcode(err) != "M_UNKNOWN_TOKEN" {
				t.Errorf("second logout: %v, want 401 M_UNKNOWN_TOKEN", err)
			}
			assertNoSecrets(t, err, tok)
		})
	}
}

func TestLoginRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		dialect matrixtest.Dialect
		user    string
		pw      string
		errcode string
	}{
		{"synapse: wrong password", matrixtest.Synapse, "alice", "wrong", "M_FORBIDDEN"},
		{"dendrite: wrong password", matrixtest.Dendrite, "alice", "wrong", "M_FORBIDDEN"},
		{"synapse: no such user", matrixtest.Synapse, "nobody", testPassword, "M_FORBIDDEN"},
		{"synapse: deactivated", matrixtest.Synapse, "gone", testPassword, "M_USER_DEACTIVATED"},
		{"dendrite: deactivated", matrixtest.Dendrite, "gone", testPassword, "M_FORBIDDEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, c := newServer(t, matrixtest.Options{Dialect: tt.dialect})
			srv.AddUser(matrixtest.FakeUser{Localpart: "alice"}, testPassword)
			srv.AddUser(matrixtest.FakeUser{Localpart: "gone", Deactivated: true}, testPassword)
			_, err := c.Login(t.Context(), tt.user, tt.pw)
			if matrix.Status(err) != http.StatusForbidden || matrix.Errcode(err) != tt.errcode {
				t.Fatalf("Login: %v, want 403 %s", err, tt.errcode)
			}
			assertKind(t, err, matrix.Refused)
			assertNoSecrets(t, err, tt.pw)
		})
	}
}

func TestUsernameAvailable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		o         matrixtest.Options
		localpart string
		want      matrix.Availability
		wantErr   string // errcode
	}{
		{"synapse, registration disabled: unknown", matrixtest.Options{}, "alice", matrix.Unknown, ""},
		{"synapse, registration disabled: unknown, even if free", matrixtest.Options{}, "zoe", matrix.Unknown, ""},
		{"synapse: taken", matrixtest.Options{RegistrationEnabled: true}, "alice", matrix.Taken, ""},
		{"synapse: free", matrixtest.Options{RegistrationEnabled: true}, "zoe", matrix.Available, ""},
		{"synapse does not lowercase", matrixtest.Options{RegistrationEnabled: true}, "Alice", matrix.Unknown, "M_INVALID_USERNAME"},
		{"dendrite: taken", matrixtest.Options{Dialect: matrixtest.Dendrite}, "alice", matrix.Taken, ""},
		{"dendrite: taken, ignoring case", matrixtest.Options{Dialect: matrixtest.Dendrite}, "ALICE", matrix.Taken, ""},
		{"dendrite: free", matrixtest.Options{Dialect: matrixtest.Dendrite}, "zoe", matrix.Available, ""},
		{"dendrite: invalid", matrixtest.Options{Dialect: matrixtest.Dendrite}, "z!oe", matrix.Unknown, "M_INVALID_USERNAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, c := newServer(t, tt.o)
			srv.AddUser(matrixtest.FakeUser{Localpart: "alice"}, "")
			got, err := c.UsernameAvailable(t.Context(), tt.localpart)
			if got != tt.want || matrix.Errcode(err) != tt.wantErr || (tt.wantErr == "") != (err == nil) {
				t.Errorf("UsernameAvailable(%q) = %v, %v; want %v, %q", tt.localpart, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestPasswordPolicy(t *testing.T) {
	t.Parallel()
	policy := matrix.PasswordPolicy{MinLength: 12, RequireDigit: true, RequireSymbol: true, RequireUppercase: true}
	tests := []struct {
		name      string
		o         matrixtest.Options
		want      matrix.PasswordPolicy
		published bool
	}{
		{"synapse with a policy", matrixtest.Options{PasswordPolicy: &policy}, policy, true},
		{"synapse without", matrixtest.Options{}, matrix.PasswordPolicy{}, true},
		{"dendrite has no endpoint", matrixtest.Options{Dialect: matrixtest.Dendrite}, matrix.PasswordPolicy{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, c := newServer(t, tt.o)
			got, published, err := c.PasswordPolicy(t.Context())
			if err != nil || got != tt.want || published != tt.published {
				t.Errorf("PasswordPolicy = %+v, %v, %v; want %+v, %v", got, published, err, tt.want, tt.published)
			}
		})
	}
}

// Synapse copies policy values from YAML as written: 1 for true, "12" for 12.
func TestPasswordPolicyLenient(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"m.minimum_length":"12","m.require_digit":1,"m.require_symbol":0,"m.require_lowercase":true,"m.require_uppercase":null}`))
	}))
	t.Cleanup(hs.Close)
	c, err := matrix.NewClient(hs.URL, hs.Client())
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := c.PasswordPolicy(t.Context())
	want := matrix.PasswordPolicy{MinLength: 12, RequireDigit: true, RequireLowercase: true}
	if err != nil || !ok || got != want {
		t.Errorf("PasswordPolicy = %+v, %v, %v; want %+v", got, ok, err, want)
	}
}

func TestVersions(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		_, c := newServer(t, matrixtest.Options{Dialect: d})
		v, err := c.Versions(t.Context())
		if err != nil || len(v) == 0 {
			t.Errorf("%v: Versions = %v, %v", d, v, err)
		}
	}
	for name, h := range map[string]http.HandlerFunc{
		"a web page":    func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>welcome</html>")) },
		"a 404":         http.NotFound,
		"other JSON":    func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"status":"ok"}`)) },
		"an empty list": func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"versions":[]}`)) },
	} {
		hs := httptest.NewServer(h)
		t.Cleanup(hs.Close)
		c, err := matrix.NewClient(hs.URL, hs.Client())
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Versions(t.Context())
		if !errors.Is(err, matrix.ErrNotHomeserver) {
			t.Errorf("%s: Versions error %v, want ErrNotHomeserver", name, err)
		}
	}
}

// A redirect is not followed (a POST would become a GET): the error says
// where to point the tool instead.
func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(http.RedirectHandler("https://matrix.example.org/", http.StatusMovedPermanently))
	t.Cleanup(hs.Close)
	c, err := matrix.NewClient(hs.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.RegisterSharedSecret(t.Context(), []byte(testSecret), matrix.Registration{Localpart: "a", Password: testPassword})
	if matrix.Status(err) != http.StatusMovedPermanently {
		t.Fatalf("error %v, want the 301", err)
	}
	assertKind(t, err, matrix.Permanent)
	if want := "redirected to https://matrix.example.org/"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

func TestServerName(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		srv, c := newServer(t, matrixtest.Options{Dialect: d, ServerName: "chat.example"})
		if got, err := c.ServerName(t.Context()); err != nil || got != "chat.example" || got != srv.ServerName() {
			t.Errorf("%v: ServerName = %q, %v; want chat.example", d, got, err)
		}
	}
	_, c := newServer(t, matrixtest.Options{Dialect: matrixtest.Dendrite, NoFederation: true})
	if got, err := c.ServerName(t.Context()); matrix.Status(err) != http.StatusNotFound {
		t.Errorf("without federation: ServerName = %q, %v; want the 404", got, err)
	}
}
