package mas_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provision-matrix/provision/internal/mas"
	"github.com/provision-matrix/provision/internal/mastest"
	"github.com/provision-matrix/provision/internal/matrix"
)

const tokenRoute = "POST /oauth2/token"

func TestNewClientRefusesBadSettings(t *testing.T) {
	t.Parallel()
	const id = mastest.DefaultClientID
	tests := []struct {
		name, url, id, secret string
	}{
		{"client ID not a ULID", "https://auth.example.org", "provision", "s"},
		{"client ID lowercase", "https://auth.example.org", strings.ToLower(id), "s"},
		{"empty secret", "https://auth.example.org", id, " \n"},
		{"no scheme", "auth.example.org", id, "s"},
		{"credentials in URL", "https://u:p@auth.example.org", id, "s"},
		{"query", "https://auth.example.org/?x=1", id, "s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := mas.NewClient(tt.url, nil, tt.id, []byte(tt.secret), nil)
			if err == nil {
				t.Fatal("NewClient accepted it")
			}
			assertNoSecrets(t, err, "p@")
		})
	}
}

// A secret with characters that form-urlencoding changes still works: MAS
// compares the Basic credentials as sent.
func TestSecretSentAsIs(t *testing.T) {
	t.Parallel()
	srv, c := newServer(t, mastest.Options{ClientSecret: "a+b/c=d:e%20f"})
	if _, err := c.SiteConfig(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if srv.RequestCount(tokenRoute) != 1 {
		t.Error("no token was requested")
	}
}

func TestTokenRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		o        mastest.Options
		secret   string   // "" for the right one
		scopes   []string // extra scopes
		want     error
		wantText string
	}{
		{"wrong secret", mastest.Options{ClientSecret: "right-secret"}, "wrong-secret", nil, mas.ErrBadClient, "client_secret_basic"},
		{"not an admin client", mastest.Options{NotAdminClient: true}, "", nil, mas.ErrNotAdminClient, "policy.data.admin_clients"},
		{"synapse admin scope", mastest.Options{}, "", []string{"urn:synapse:admin:*"}, mas.ErrNotAdminClient, "urn:synapse:admin:*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := mastest.New(t, tt.o)
			secret := tt.secret
			if secret == "" {
				secret = srv.ClientSecret()
			}
			c, err := mas.NewClient(srv.URL(), srv.Client(), srv.ClientID(), []byte(secret), tt.scopes)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.CreateUser(ctx(t), "alice", mas.CreateOptions{})
			assertIs(t, err, tt.want)
			assertKind(t, err, matrix.Permanent)
			assertNoSecrets(t, err, secret, srv.ClientSecret())
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not mention %q", err, tt.wantText)
			}
			if mas.MayHaveLanded(err) {
				t.Error("MayHaveLanded = true though no admin request was sent")
			}
			if n := srv.RequestCount("POST /api/admin/v1/users"); n != 0 {
				t.Errorf("%d create requests sent without a token", n)
			}
		})
	}
}

func TestNoAdminAPI(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, mastest.Options{NoAdminAPI: true})
	_, err := c.UserByUsername(ctx(t), "alice")
	assertIs(t, err, mas.ErrNoAdminAPI)
	assertKind(t, err, matrix.Permanent)
	if errors.Is(err, mas.ErrNotFound) {
		t.Error("a missing admin API reads as a missing user")
	}
	if !strings.Contains(err.Error(), "adminapi") {
		t.Errorf("error %q does not say to add the adminapi resource", err)
	}
}

func TestNotMAS(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(hs.Close)
	c, err := mas.NewClient(hs.URL, hs.Client(), mastest.DefaultClientID, []byte("s"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.SiteConfig(ctx(t))
	assertIs(t, err, mas.ErrNoTokenEndpoint)
	assertKind(t, err, matrix.Permanent)
}

// The token is reused until a fifth of its lifetime (at most 30 s) is left,
// then renewed before any request carries an expired one.
func TestTokenRenewedBeforeExpiry(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, c := newServer(t, mastest.Options{Clock: clk.Now, TokenLifetime: 300 * time.Second})
	mas.SetClock(c, clk.Now)
	srv.AddUser(mastest.FakeUser{Username: "alice"})
	lookup := func() {
		t.Helper()
		if _, err := c.UserByUsername(ctx(t), "alice"); err != nil {
			t.Fatal(err)
		}
	}
	lookup()
	clk.Advance(269 * time.Second)
	lookup()
	if n := srv.RequestCount(tokenRoute); n != 1 {
		t.Errorf("token requests at 269 s = %d, want 1", n)
	}
	clk.Advance(2 * time.Second) // 29 s left
	lookup()
	if n := srv.RequestCount(tokenRoute); n != 2 {
		t.Errorf("token requests at 271 s = %d, want 2", n)
	}
	if n := srv.RequestCount("GET /api/admin/v1/users/by-username/{username}"); n != 3 {
		t.Errorf("lookups sent = %d, want 3 (none refused)", n)
	}
}

// A token MAS no longer accepts (expired by MAS's clock, or revoked) is
// replaced once and the request sent again.
func TestTokenRenewedOn401(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"expired", "revoked"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			masClock := newClock()
			srv, c := newServer(t, mastest.Options{Clock: masClock.Now})
			mas.SetClock(c, newClock().Now) // the client's clock stands still
			if _, err := c.SiteConfig(ctx(t)); err != nil {
				t.Fatal(err)
			}
			if how == "expired" {
				masClock.Advance(time.Hour)
			} else {
				srv.ExpireTokens()
			}
			if _, err := c.CreateUser(ctx(t), "alice", mas.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if n := srv.RequestCount(tokenRoute); n != 2 {
				t.Errorf("token requests = %d, want 2", n)
			}
			if n := srv.RequestCount("POST /api/admin/v1/users"); n != 2 {
				t.Errorf("create requests = %d, want 2 (refused, then sent again)", n)
			}
			if _, ok := srv.User("alice"); !ok {
				t.Error("alice was not created")
			}
		})
	}
}

// Many workers share one client: one token request serves them all, and
// when it runs out, one renewal.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv, c := newServer(t, mastest.Options{Clock: clk.Now})
	mas.SetClock(c, clk.Now)
	run := func(prefix string) {
		var wg sync.WaitGroup
		errs := make([]error, 32)
		for i := range errs {
			wg.Go(func() {
				_, errs[i] = c.CreateUser(ctx(t), fmt.Sprintf("%s%02d", prefix, i), mas.CreateOptions{})
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	}
	run("a")
	if n := srv.RequestCount(tokenRoute); n != 1 {
		t.Errorf("token requests for 32 concurrent calls = %d, want 1", n)
	}
	clk.Advance(290 * time.Second)
	run("b")
	if n := srv.RequestCount(tokenRoute); n != 2 {
		t.Errorf("token requests after expiry = %d, want 2", n)
	}
	if got := len(srv.Usernames()); got != 64 {
		t.Errorf("users = %d, want 64", got)
	}
}

func TestWaitingForTokenHonoursContext(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, mastest.Options{})
	cx, cancel := context.WithCancel(ctx(t))
	cancel()
	_, err := c.SiteConfig(cx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
	assertKind(t, err, matrix.Permanent)
}

func TestFaults(t *testing.T) {
	t.Parallel()
	const create = "POST /api/admin/v1/users"
	const lookup = "GET /api/admin/v1/users/by-username/{username}"
	tests := []struct {
		name      string
		route     string
		fault     mastest.Fault
		call      func(*mas.Client) error
		kind      matrix.Kind
		wait      time.Duration
		landed    bool
		isNetwork bool
	}{
		{"429 from a proxy", create, mastest.Fault{Status: 429, RetryAfter: 3 * time.Second}, createAlice, matrix.RateLimited, 3 * time.Second, false, false},
		{"503 on create", create, mastest.Fault{Status: 503}, createAlice, matrix.Retry, 0, true, false},
		{"503 on a read", lookup, mastest.Fault{Status: 503}, lookupAlice, matrix.Retry, 0, false, false},
		{"answer lost after create", create, mastest.Fault{Drop: true}, createAlice, matrix.Retry, 0, true, true},
		{"reset on a read", lookup, mastest.Fault{Reset: true}, lookupAlice, matrix.Retry, 0, false, true},
		{"503 from the token endpoint", tokenRoute, mastest.Fault{Status: 503}, createAlice, matrix.Retry, 0, false, false},
		{"429 from the token endpoint", tokenRoute, mastest.Fault{Status: 429, RetryAfter: time.Second}, createAlice, matrix.RateLimited, time.Second, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, c := newServer(t, mastest.Options{})
			srv.AddUser(mastest.FakeUser{Username: "bob"})
			n := 1
			if tt.fault.Reset {
				// Go's transport sends a GET again, once, when a reused
				// connection is reset: both attempts must fail.
				n = 2
			}
			srv.FailNext(n, tt.route, tt.fault)
			err := tt.call(c)
			if err == nil {
				t.Fatal("no error")
			}
			kind, wait := mas.Classify(err)
			if kind != tt.kind || wait != tt.wait {
				t.Errorf("Classify(%v) = %v, %v; want %v, %v", err, kind, wait, tt.kind, tt.wait)
			}
			if got := mas.MayHaveLanded(err); got != tt.landed {
				t.Errorf("MayHaveLanded(%v) = %v, want %v", err, got, tt.landed)
			}
			var ne *matrix.NetError
			if errors.As(err, &ne) != tt.isNetwork {
				t.Errorf("error %v: *matrix.NetError = %v, want %v", err, !tt.isNetwork, tt.isNetwork)
			}
			assertNoSecrets(t, err, srv.ClientSecret())
			// The fault is spent: the same call now succeeds (a lost create
			// did create the user, so it is found on a retry's check).
			if tt.fault.Reset {
				return // a second fault may be left
			}
			if tt.fault.Drop {
				if _, err := c.UserByUsername(ctx(t), "alice"); err != nil {
					t.Errorf("after a lost answer, alice is not there: %v", err)
				}
				return
			}
			if err := tt.call(c); err != nil {
				t.Errorf("second attempt: %v", err)
			}
		})
	}
}

func createAlice(c *mas.Client) error {
	_, err := c.CreateUser(context.Background(), "alice", mas.CreateOptions{})
	return err
}

func lookupAlice(c *mas.Client) error {
	_, err := c.UserByUsername(context.Background(), "bob")
	return err
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		kind matrix.Kind
		wait time.Duration
	}{
		{"nil", nil, matrix.Permanent, 0},
		{"429", &mas.Error{Status: 429, RetryAfter: 2 * time.Second}, matrix.RateLimited, 2 * time.Second},
		{"408", &mas.Error{Status: 408}, matrix.Retry, 0},
		{"500", &mas.Error{Status: 500, Titles: []string{"Homeserver error"}}, matrix.Retry, 0},
		{"501", &mas.Error{Status: 501}, matrix.Permanent, 0},
		{"404", &mas.Error{Status: 404, Titles: []string{"User ID x not found"}}, matrix.Refused, 0},
		{"409 wrapped", fmt.Errorf("create: %w", &mas.Error{Status: 409}), matrix.Refused, 0},
		{"302", &mas.Error{Status: 302}, matrix.Permanent, 0},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), matrix.Permanent, 0},
		{"network", &matrix.NetError{Method: "POST", URL: "u", Err: errors.New("connection reset")}, matrix.Retry, 0},
		{"matrix 429", &matrix.Error{Status: 429, Errcode: matrix.ErrcodeLimitExceeded, RetryAfter: time.Second}, matrix.RateLimited, time.Second},
		{"bad client", fmt.Errorf("x: %w", mas.ErrBadClient), matrix.Permanent, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kind, wait := mas.Classify(tt.err)
			if kind != tt.kind || wait != tt.wait {
				t.Errorf("Classify = %v, %v; want %v, %v", kind, wait, tt.kind, tt.wait)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  *mas.Error
		want string
	}{
		{&mas.Error{Status: 409, Titles: []string{"User already exists"}}, "User already exists (HTTP 409)"},
		{&mas.Error{Status: 400, Titles: []string{`Email "x" is not valid`, "Missing domain or user"}}, `Email "x" is not valid: Missing domain or user (HTTP 400)`},
		{&mas.Error{Status: 401, Code: "invalid_client", Titles: []string{"Client authentication failed."}}, "invalid_client: Client authentication failed (HTTP 401)"},
		{&mas.Error{Status: 502}, "HTTP 502 Bad Gateway"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// MAS's text is cleaned before it is kept: no terminal escapes, no page-long
// titles, no more than a handful of them.
func TestServerTextSanitised(t *testing.T) {
	t.Parallel()
	srv := mastest.New(t, mastest.Options{})
	long := strings.Repeat("x", 5000)
	var titles []string
	for range 20 {
		titles = append(titles, `{"title":"\u001b[31mred\u0007 `+long+`"}`)
	}
	body := `{"errors":[` + strings.Join(titles, ",") + `]}`
	mux := http.NewServeMux()
	mux.Handle("POST /oauth2/token", httputilProxy(srv.URL()))
	mux.HandleFunc("/api/admin/v1/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(body))
	})
	front := httptest.NewServer(mux)
	t.Cleanup(front.Close)
	c, err := mas.NewClient(front.URL, front.Client(), srv.ClientID(), []byte(srv.ClientSecret()), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateUser(ctx(t), "alice", mas.CreateOptions{})
	var e *mas.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is no *mas.Error", err)
	}
	if len(e.Titles) > 8 {
		t.Errorf("kept %d titles", len(e.Titles))
	}
	for _, s := range e.Titles {
		if strings.ContainsAny(s, "\x1b\x07") || len([]rune(s)) > 301 {
			t.Errorf("title kept as %q…", s[:40])
		}
	}
}

// httputilProxy forwards the token request to the fake.
func httputilProxy(target string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.Path, r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
}
