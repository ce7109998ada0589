package matrix_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
)

func TestRegisterSharedSecret(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			srv, c := newServer(t, matrixtest.Options{Dialect: d, SharedSecret: testSecret})
			got, err := c.RegisterSharedSecret(t.Context(), []byte(testSecret), matrix.Registration{
				Localpart: "alice", Password: testPassword, DisplayName: "Alice Liddell", Admin: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			want := matrix.Registered{UserID: srv.UserID("alice")}
			if got != want {
				t.Errorf("RegisterSharedSecret = %+v, want %+v", got, want)
			}
			u, ok := srv.User("alice")
			if !ok {
				t.Fatal("the account was not created")
			}
			if !u.Admin || u.DisplayName != "Alice Liddell" || !srv.CheckPassword("alice", testPassword) {
				t.Errorf("account = %+v (password ok: %v)", u, srv.CheckPassword("alice", testPassword))
			}
			// No session may be left behind: Synapse honours inhibit_login,
			// Dendrite's session is logged out.
			if u.Devices != 0 {
				t.Errorf("the new account has %d devices, want 0", u.Devices)
			}
			wantLogouts := 0
			if d == matrixtest.Dendrite {
				wantLogouts = 1
			}
			if n := srv.Counts().Logouts; n != wantLogouts {
				t.Errorf("logouts = %d, want %d", n, wantLogouts)
			}
		})
	}
}

func TestRegisterSharedSecretRefusals(t *testing.T) {
	t.Parallel()
	type check func(t *testing.T, srv *matrixtest.Server, got matrix.Registered, err error)
	refused := func(pred func(error) bool) check {
		return func(t *testing.T, srv *matrixtest.Server, _ matrix.Registered, err error) {
			t.Helper()
			if !pred(err) {
				t.Fatalf("error = %v", err)
			}
			assertKind(t, err, matrix.Refused)
			if matrix.MayHaveLanded(err) {
				t.Errorf("MayHaveLanded(%v) = true for a refusal", err)
			}
		}
	}
	sentinel := func(target error, kind matrix.Kind, hint string) check {
		return func(t *testing.T, srv *matrixtest.Server, _ matrix.Registered, err error) {
			t.Helper()
			assertIs(t, err, target)
			assertKind(t, err, kind)
			if !strings.Contains(err.Error(), hint) {
				t.Errorf("error %q does not say %q", err, hint)
			}
		}
	}
	created := func(localpart, userType string) check {
		return func(t *testing.T, srv *matrixtest.Server, got matrix.Registered, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			if u, ok := srv.User(localpart); !ok || u.UserType != userType || got.UserID != u.UserID {
				t.Errorf("got %+v, account %+v (exists: %v); want %s with type %q", got, u, ok, localpart, userType)
			}
		}
	}
	tests := []struct {
		name    string
		dialect matrixtest.Dialect
		opts    matrixtest.Options
		secret  string
		reg     matrix.Registration
		check   check
	}{
		{name: "synapse: name taken, ignoring case", reg: matrix.Registration{Localpart: "Bob"},
			check: refused(matrix.IsUserInUse)},
		{name: "dendrite: name taken, ignoring case", dialect: matrixtest.Dendrite, reg: matrix.Registration{Localpart: "BOB"},
			check: refused(matrix.IsUserInUse)},
		{name: "synapse: invalid localpart", reg: matrix.Registration{Localpart: "b!rd"},
			check: refused(matrix.IsInvalidUsername)},
		{name: "dendrite: invalid localpart", dialect: matrixtest.Dendrite, reg: matrix.Registration{Localpart: "_bird"},
			check: refused(matrix.IsInvalidUsername)},
		{name: "synapse: all digits", reg: matrix.Registration{Localpart: "1234"},
			check: refused(matrix.IsInvalidUsername)},
		{name: "dendrite: short password", dialect: matrixtest.Dendrite, reg: matrix.Registration{Localpart: "carol", Password: "short"},
			check: refused(matrix.IsWeakPassword)},
		{name: "synapse: no policy on the shared-secret path", reg: matrix.Registration{Localpart: "carol", Password: "short"},
			check: created("carol", "")},
		{name: "synapse: password too long", reg: matrix.Registration{Localpart: "carol", Password: strings.Repeat("p", 513)},
			check: refused(func(err error) bool { return matrix.Status(err) == 400 && matrix.Errcode(err) == "M_UNKNOWN" })},
		{name: "synapse: user type", reg: matrix.Registration{Localpart: "bot1", UserType: "bot"},
			check: created("bot1", "bot")},
		{name: "synapse: unknown user type", reg: matrix.Registration{Localpart: "bot1", UserType: "robot"},
			check: refused(func(err error) bool { return strings.Contains(err.Error(), "Invalid user type") })},
		{name: "dendrite: user type breaks the MAC", dialect: matrixtest.Dendrite, reg: matrix.Registration{Localpart: "bot1", UserType: "bot"},
			check: sentinel(matrix.ErrSharedSecretMismatch, matrix.Permanent, "does not support them")},
		{name: "synapse: wrong secret", secret: "not-the-secret",
			check: sentinel(matrix.ErrSharedSecretMismatch, matrix.Permanent, "HMAC incorrect")},
		{name: "dendrite: wrong secret", dialect: matrixtest.Dendrite, secret: "not-the-secret",
			check: sentinel(matrix.ErrSharedSecretMismatch, matrix.Permanent, "bad mac")},
		{name: "synapse: no secret configured", opts: matrixtest.Options{SharedSecret: "-"},
			check: sentinel(matrix.ErrSharedSecretDisabled, matrix.Permanent, "registration_shared_secret")},
		{name: "dendrite: no secret configured", dialect: matrixtest.Dendrite, opts: matrixtest.Options{SharedSecret: "-"},
			check: sentinel(matrix.ErrNoSharedSecretEndpoint, matrix.Permanent, "Matrix Authentication Service")},
		{name: "synapse: delegated to MAS", opts: matrixtest.Options{MAS: true},
			check: sentinel(matrix.ErrNoSharedSecretEndpoint, matrix.Permanent, "Matrix Authentication Service")},
		{name: "NUL in the password", reg: matrix.Registration{Localpart: "carol", Password: "a\x00b"},
			check: func(t *testing.T, srv *matrixtest.Server, _ matrix.Registered, err error) {
				assertIs(t, err, matrix.ErrInvalidRequest)
				assertKind(t, err, matrix.Refused)
				if n := len(srv.Counts().Requests); n != 0 {
					t.Errorf("%d requests sent, want none", n)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := tt.opts
			o.Dialect = tt.dialect
			switch o.SharedSecret {
			case "":
				o.SharedSecret = testSecret
			case "-":
				o.SharedSecret = ""
			}
			srv, c := newServer(t, o)
			srv.AddUser(matrixtest.FakeUser{Localpart: "bob"}, "bobs-password")
			secret := tt.secret
			if secret == "" {
				secret = testSecret
			}
			reg := tt.reg
			if reg.Localpart == "" {
				reg.Localpart = "carol"
			}
			if reg.Password == "" {
				reg.Password = testPassword
			}
			got, err := c.RegisterSharedSecret(t.Context(), []byte(secret), reg)
			tt.check(t, srv, got, err)
			assertNoSecrets(t, err, secret, testSecret, reg.Password)
			if err != nil && !strings.Contains(err.Error(), "register "+reg.Localpart) {
				t.Errorf("error %q does not name the user", err)
			}
		})
	}
}

// An "unknown nonce" answer (the server restarted, or the nonce expired) is
// retried once with a fresh nonce; twice in a row means a setup where nonces
// cannot work (Synapse workers) and stops the run.
func TestRegisterSharedSecretNonceExpiry(t *testing.T) {
	t.Parallel()
	lifetime := map[matrixtest.Dialect]time.Duration{matrixtest.Synapse: 61 * time.Second, matrixtest.Dendrite: 5*time.Minute + time.Second}
	for _, d := range dialects {
		t.Run(d.String()+"/once", func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			var expired atomic.Bool
			srv, c := newServer(t, matrixtest.Options{Dialect: d, SharedSecret: testSecret, Clock: clk.Now,
				// The first POST arrives after its nonce has expired.
				Faults: onRequest(registerPOST, func() {
					if expired.CompareAndSwap(false, true) {
						clk.Advance(lifetime[d])
					}
				})})
			got, err := c.RegisterSharedSecret(t.Context(), []byte(testSecret), matrix.Registration{Localpart: "dave", Password: testPassword})
			if err != nil {
				t.Fatal(err)
			}
			if got.UserID != srv.UserID("dave") {
				t.Errorf("UserID = %q", got.UserID)
			}
			n := srv.Counts().Requests
			if n["GET /_synapse/admin/v1/register"] != 2 || n["POST /_synapse/admin/v1/register"] != 2 {
				t.Errorf("requests = %v, want 2 nonces and 2 POSTs", n)
			}
		})
		t.Run(d.String()+"/twice", func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			srv, c := newServer(t, matrixtest.Options{Dialect: d, SharedSecret: testSecret, Clock: clk.Now,
				Faults: onRequest(registerPOST, func() { clk.Advance(lifetime[d]) })})
			_, err := c.RegisterSharedSecret(t.Context(), []byte(testSecret), matrix.Registration{Localpart: "dave", Password: testPassword})
			assertIs(t, err, matrix.ErrNonceRejected)
			// Retried under the caller's time budget: a server that restarts twice
			// between a nonce and its POST is back a moment later (issue 11).
			assertKind(t, err, matrix.Retry)
			if !strings.Contains(err.Error(), "workers") {
				t.Errorf("error %q gives no hint", err)
			}
			if matrix.MayHaveLanded(err) && d == matrixtest.Synapse {
				t.Errorf("MayHaveLanded = true for Synapse's 400")
			}
			if n := srv.Counts().Registrations; n != 0 {
				t.Errorf("%d registrations", n)
			}
		})
	}
}

// A restart drops every connection, idle ones included; the next
// registration goes through on a new one.
func TestRegisterSharedSecretAcrossRestart(t *testing.T) {
	t.Parallel()
	srv, c := newServer(t, matrixtest.Options{SharedSecret: testSecret})
	for _, lp := range []string{"erin", "erik"} {
		if _, err := c.RegisterSharedSecret(t.Context(), []byte(testSecret), matrix.Registration{Localpart: lp, Password: testPassword}); err != nil {
			t.Fatal(err)
		}
		srv.Restart()
	}
	if n := len(srv.Users()); n != 2 {
		t.Errorf("%d accounts, want 2", n)
	}
}

func TestRegisterSharedSecretFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		fault       matrixtest.Fault
		match       func(*http.Request) bool
		kind        matrix.Kind
		wait        time.Duration
		mayLanded   bool
		created     bool
		errContains string
	}{
		{name: "429 retry_after_ms", match: registerPOST,
			fault: matrixtest.Fault{Status: 429, Errcode: "M_LIMIT_EXCEEDED", RetryAfterMs: 1500},
			kind:  matrix.RateLimited, wait: 1500 * time.Millisecond, errContains: "M_LIMIT_EXCEEDED"},
		{name: "429 Retry-After header only", match: registerPOST,
			fault: matrixtest.Fault{Status: 429, Errcode: "M_LIMIT_EXCEEDED", RetryAfterMs: 1200, RetryAfterHeader: true, NoRetryAfterBody: true},
			kind:  matrix.RateLimited, wait: 2 * time.Second},
		{name: "429 both, body wins", match: registerPOST,
			fault: matrixtest.Fault{Status: 429, Errcode: "M_LIMIT_EXCEEDED", RetryAfterMs: 1200, RetryAfterHeader: true},
			kind:  matrix.RateLimited, wait: 1200 * time.Millisecond},
		{name: "429 from a proxy", match: registerPOST,
			fault: matrixtest.Fault{Status: 429, RetryAfterMs: 3000, RetryAfterHeader: true},
			kind:  matrix.RateLimited, wait: 3 * time.Second, errContains: "HTTP 429"},
		{name: "429 with another errcode is a refusal", match: registerPOST,
			fault: matrixtest.Fault{Status: 429, Errcode: "M_UNKNOWN"},
			kind:  matrix.Refused},
		{name: "500 on the POST", match: registerPOST,
			fault: matrixtest.Fault{Status: 500, Errcode: "M_UNKNOWN"},
			kind:  matrix.Retry, mayLanded: true},
		{name: "502 from a proxy on the POST", match: registerPOST,
			fault: matrixtest.Fault{Status: 502},
			kind:  matrix.Retry, mayLanded: true, errContains: "HTTP 502 Bad Gateway"},
		{name: "503 on the nonce", match: registerGET,
			fault: matrixtest.Fault{Status: 503},
			kind:  matrix.Retry, errContains: "get nonce"},
		{name: "reset before handling", match: registerPOST,
			fault: matrixtest.Fault{ResetBefore: true},
			kind:  matrix.Retry, mayLanded: true, errContains: "may have reached the server"},
		{name: "reset on the nonce", match: registerGET,
			fault: matrixtest.Fault{ResetBefore: true},
			kind:  matrix.Retry},
		{name: "dropped response: created, and the client cannot know", match: registerPOST,
			fault: matrixtest.Fault{DropResponse: true},
			kind:  matrix.Retry, mayLanded: true, created: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, c := newServer(t, matrixtest.Options{SharedSecret: testSecret,
				Faults: matrixtest.FaultN(1, tt.fault, tt.match)})
			reg := matrix.Registration{Localpart: "frank", Password: testPassword}
			_, err := c.RegisterSharedSecret(t.Context(), []byte(testSecret), reg)
			if err == nil {
				t.Fatal("no error")
			}
			kind, wait := matrix.Classify(err)
			if kind != tt.kind || wait != tt.wait {
				t.Errorf("Classify(%v) = (%v, %v), want (%v, %v)", err, kind, wait, tt.kind, tt.wait)
			}
			if got := matrix.MayHaveLanded(err); got != tt.mayLanded {
				t.Errorf("MayHaveLanded(%v) = %v, want %v", err, got, tt.mayLanded)
			}
			if _, ok := srv.User("frank"); ok != tt.created {
				t.Errorf("account created = %v, want %v", ok, tt.created)
			}
			if !strings.Contains(err.Error(), tt.errContains) {
				t.Errorf("error %q does not contain %q", err, tt.errContains)
			}
			assertNoSecrets(t, err, testSecret, testPassword)

			// What the batch's retry then sees.
			_, err = c.RegisterSharedSecret(t.Context(), []byte(testSecret), reg)
			if tt.created && !matrix.IsUserInUse(err) {
				t.Errorf("retry after a dropped response: %v, want M_USER_IN_USE", err)
			}
			if !tt.created && err != nil {
				t.Errorf("retry: %v", err)
			}
		})
	}
}

func TestRegisterSharedSecretUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	for _, hs := range []string{closed, "http://homeserver.invalid"} {
		c, err := matrix.NewClient(hs, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.RegisterSharedSecret(t.Context(), []byte(testSecret), matrix.Registration{Localpart: "gina", Password: testPassword})
		var ne *matrix.NetError
		if !errors.As(err, &ne) || ne.Sent {
			t.Errorf("%s: error %#v, want an unsent NetError", hs, err)
		}
		if matrix.MayHaveLanded(err) {
			t.Errorf("%s: MayHaveLanded = true", hs)
		}
	}
}

func TestRegisterSharedSecretTimeout(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, matrixtest.Options{SharedSecret: testSecret,
		Faults: matrixtest.FaultN(1, matrixtest.Fault{Latency: time.Minute}, registerPOST)})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := c.RegisterSharedSecret(ctx, []byte(testSecret), matrix.Registration{Localpart: "hank", Password: testPassword})
	assertIs(t, err, context.DeadlineExceeded)
	assertKind(t, err, matrix.Retry)
	if !matrix.MayHaveLanded(err) {
		t.Errorf("MayHaveLanded(%v) = false after the request was sent", err)
	}
}

func TestRegisterSharedSecretCancelled(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, matrixtest.Options{SharedSecret: testSecret})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.RegisterSharedSecret(ctx, []byte(testSecret), matrix.Registration{Localpart: "hank", Password: testPassword})
	assertIs(t, err, context.Canceled)
	assertKind(t, err, matrix.Permanent)
}

// When Dendrite's session cannot be logged out, the account exists all the
// same: the registration succeeds and reports the stray device.
func TestRegisterSharedSecretLogoutFails(t *testing.T) {
	t.Parallel()
	srv, c := newServer(t, matrixtest.Options{Dialect: matrixtest.Dendrite, SharedSecret: testSecret,
		Faults: matrixtest.FaultN(1, matrixtest.Fault{Status: 503}, matrixtest.Route(http.MethodPost, "/_matrix/client/v3/logout"))})
	got, err := c.RegisterSharedSecret(t.Context(), []byte(testSecret), matrix.Registration{Localpart: "ivy", Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != srv.UserID("ivy") || got.DeviceID != "shared_secret_registration" || got.LogoutErr == nil {
		t.Errorf("RegisterSharedSecret = %+v, want the user, its stray device and the logout error", got)
	}
	if u, _ := srv.User("ivy"); u.Devices != 1 {
		t.Errorf("devices = %d, want the 1 stray session", u.Devices)
	}
	if strings.Contains(got.LogoutErr.Error(), "dendrite_") {
		t.Errorf("LogoutErr %q contains the access token", got.LogoutErr)
	}
}

func TestProbeSharedSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		o    matrixtest.Options
		want error
	}{
		{"synapse", matrixtest.Options{SharedSecret: testSecret}, nil},
		// Synapse hands out nonces even without a secret: only
		// VerifySharedSecret can tell.
		{"synapse without a secret", matrixtest.Options{}, nil},
		{"synapse with MAS", matrixtest.Options{SharedSecret: testSecret, MAS: true}, matrix.ErrNoSharedSecretEndpoint},
		{"dendrite", matrixtest.Options{Dialect: matrixtest.Dendrite, SharedSecret: testSecret}, nil},
		{"dendrite without a secret", matrixtest.Options{Dialect: matrixtest.Dendrite}, matrix.ErrNoSharedSecretEndpoint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, c := newServer(t, tt.o)
			err := c.ProbeSharedSecret(t.Context())
			if tt.want == nil && err != nil {
				t.Fatal(err)
			}
			if tt.want != nil {
				assertIs(t, err, tt.want)
				if !strings.Contains(err.Error(), "registration_shared_secret") {
					t.Errorf("error %q gives no hint", err)
				}
			}
		})
	}
}

func TestVerifySharedSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		o      matrixtest.Options
		secret string
		want   error
	}{
		{"synapse", matrixtest.Options{SharedSecret: testSecret}, testSecret, nil},
		{"synapse, wrong secret", matrixtest.Options{SharedSecret: testSecret}, "wrong", matrix.ErrSharedSecretMismatch},
		{"synapse without a secret", matrixtest.Options{}, testSecret, matrix.ErrSharedSecretDisabled},
		{"dendrite", matrixtest.Options{Dialect: matrixtest.Dendrite, SharedSecret: testSecret}, testSecret, nil},
		{"dendrite, wrong secret", matrixtest.Options{Dialect: matrixtest.Dendrite, SharedSecret: testSecret}, "wrong", matrix.ErrSharedSecretMismatch},
		{"dendrite without a secret", matrixtest.Options{Dialect: matrixtest.Dendrite}, testSecret, matrix.ErrNoSharedSecretEndpoint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, c := newServer(t, tt.o)
			err := c.VerifySharedSecret(t.Context(), []byte(tt.secret))
			if tt.want == nil && err != nil {
				t.Fatal(err)
			}
			if tt.want != nil {
				assertIs(t, err, tt.want)
				assertKind(t, err, matrix.Permanent)
			}
			assertNoSecrets(t, err, tt.secret)
			if n := srv.Counts().Registrations; n != 0 || len(srv.Users()) != 0 {
				t.Errorf("verification created %d accounts", n)
			}
		})
	}
}
