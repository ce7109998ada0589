// Package mastest is a fake Matrix Authentication Service (MAS) over real
// HTTP, for tests of code that manages accounts through MAS's admin API. It
// serves the OAuth 2.0 token endpoint (client credentials with
// client_secret_basic) and the admin API endpoints this project uses, with
// the status codes, error titles and JSON:API shapes of MAS's own handlers:
// each behaviour names, next to it, the file it was read from in
// element-hq/matrix-authentication-service (snapshot of 2026-08).
//
// State lives in memory: users, passwords (as salted SHA-256, enough for
// CheckPassword and nothing to imitate), email addresses, upstream providers
// and links, access tokens. Requests are counted per endpoint, and faults (a
// proxy's 429 or 503, a reset, a lost answer) can be queued. Everything is
// safe for concurrent use.
package mastest

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configure a Server. The zero value is a MAS with one admin client,
// passwords enabled and no upstream provider.
type Options struct {
	// ClientID and ClientSecret are the client the token endpoint accepts
	// (MAS config: clients: with client_auth_method: client_secret_basic).
	// Defaults: a fixed ULID and a random secret.
	ClientID     string
	ClientSecret string
	// NotAdminClient leaves the client out of policy.data.admin_clients: the
	// token endpoint then refuses it the urn:mas:admin scope.
	NotAdminClient bool
	// TokenLifetime is experimental.access_token_ttl; 300 s when zero.
	TokenLifetime time.Duration
	// Clock is the time for token expiry and timestamps; time.Now when nil.
	Clock func() time.Time
	// ServerName is the homeserver's server_name; "example.org" when empty.
	ServerName string
	// PasswordsDisabled is passwords.enabled: false.
	PasswordsDisabled bool
	// MinimumPasswordComplexity is what site-config reports (zxcvbn score,
	// 0-4); 0 reports MAS's default, 3.
	MinimumPasswordComplexity int
	// WeakPassword decides MAS's complexity check. MAS scores with zxcvbn;
	// the default stand-in calls weak anything shorter than 12 characters or
	// with fewer than 5 distinct ones.
	WeakPassword func(password string) bool
	// Providers are the upstream OAuth 2.0 providers; an empty ID gets one.
	Providers []Provider
	// ReservedUsernames exist on the homeserver but not in MAS: creating
	// them answers 409 "Username is reserved by the homeserver".
	ReservedUsernames []string
	// NoAdminAPI serves the token endpoint but not the admin API, like a
	// listener without the adminapi resource.
	NoAdminAPI bool
	// OnUserCreated is called (outside the server's lock) for every user POST users
	// creates: MAS then provisions the account on the homeserver
	// (crates/tasks/src/matrix.rs, ProvisionUserJob), which a test can mirror by
	// adding the user to a fake homeserver.
	OnUserCreated func(username string)
}

// Provider is an upstream OAuth 2.0 provider.
type Provider struct {
	ID        string
	Issuer    string
	HumanName string
	BrandName string
	Disabled  bool
}

// DefaultClientID is the client ID when Options.ClientID is empty.
const DefaultClientID = "01J44RKQYM4G3TNVANTMTDYTX6"

// Fault is what to do to a request instead of answering it normally.
type Fault struct {
	// Status answers with this status and a proxy's HTML page, without
	// handling the request (429 from a rate-limiting proxy, 502, 503).
	Status int
	// RetryAfter, rounded up to whole seconds, goes in a Retry-After header.
	RetryAfter time.Duration
	// Reset cuts the connection before handling: nothing happens.
	Reset bool
	// Drop handles the request (it takes effect) and then cuts the
	// connection without answering.
	Drop bool
}

type queuedFault struct {
	route string // "" for any
	left  int
	f     Fault
}

// Server is a running fake MAS.
type Server struct {
	o   Options
	srv *httptest.Server
	mux *http.ServeMux

	mu        sync.Mutex
	users     map[string]*user // by ID
	emails    map[string]*email
	providers map[string]*Provider
	links     map[string]*link
	tokens    map[string]accessToken
	requests  map[string]int
	faults    []*queuedFault
	lastMilli int64
}

// New starts a server and stops it when the test ends.
func New(t testing.TB, o Options) *Server {
	t.Helper()
	if o.ClientID == "" {
		o.ClientID = DefaultClientID
	}
	if o.ClientSecret == "" {
		o.ClientSecret = randomHex(24)
	}
	if o.TokenLifetime <= 0 {
		o.TokenLifetime = 300 * time.Second
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.ServerName == "" {
		o.ServerName = "example.org"
	}
	if o.MinimumPasswordComplexity == 0 {
		o.MinimumPasswordComplexity = 3
	}
	if o.WeakPassword == nil {
		o.WeakPassword = defaultWeak
	}
	s := &Server{
		o:         o,
		users:     map[string]*user{},
		emails:    map[string]*email{},
		providers: map[string]*Provider{},
		links:     map[string]*link{},
		tokens:    map[string]accessToken{},
		requests:  map[string]int{},
	}
	for _, p := range o.Providers {
		if p.ID == "" {
			p.ID = s.newID()
		}
		s.providers[p.ID] = &p
	}
	s.mux = s.routes()
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(s.srv.Close)
	return s
}

func defaultWeak(pw string) bool {
	distinct := map[rune]bool{}
	for _, r := range pw {
		distinct[r] = true
	}
	return len([]rune(pw)) < 12 || len(distinct) < 5
}

// URL is MAS's base URL (http://127.0.0.1:port).
func (s *Server) URL() string { return s.srv.URL }

// Client returns an HTTP client for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// ClientID and ClientSecret are the credentials the token endpoint accepts.
func (s *Server) ClientID() string     { return s.o.ClientID }
func (s *Server) ClientSecret() string { return s.o.ClientSecret }

// Providers returns the upstream providers' IDs in ID order.
func (s *Server) Providers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedKeys(s.providers)
}

// Requests returns how many requests each endpoint received, keyed like
// "POST /api/admin/v1/users/{id}/set-password"; "unrecognized" for the rest.
// Requests answered by a fault count too.
func (s *Server) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.requests)
}

// RequestCount returns Requests()[route].
func (s *Server) RequestCount(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[route]
}

// FailNext applies f to the next n requests to route (a key of Requests;
// "" for any endpoint).
func (s *Server) FailNext(n int, route string, f Fault) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &queuedFault{route: route, left: n, f: f})
}

// ExpireTokens makes every access token issued so far unknown, as if their
// sessions had been revoked.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

func (s *Server) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("POST /oauth2/token", s.token)
	a := "/api/admin/v1"
	m.HandleFunc("GET "+a+"/site-config", s.admin(s.siteConfig))
	m.HandleFunc("GET "+a+"/users", s.admin(s.listUsers))
	m.HandleFunc("POST "+a+"/users", s.admin(s.addUser))
	m.HandleFunc("GET "+a+"/users/{id}", s.admin(s.withID(s.getUser)))
	m.HandleFunc("GET "+a+"/users/by-username/{username}", s.admin(s.userByUsername))
	m.HandleFunc("POST "+a+"/users/{id}/set-password", s.admin(s.withID(s.setPassword)))
	m.HandleFunc("POST "+a+"/users/{id}/set-admin", s.admin(s.withID(s.setAdmin)))
	m.HandleFunc("POST "+a+"/users/{id}/deactivate", s.admin(s.withID(s.deactivate)))
	m.HandleFunc("POST "+a+"/users/{id}/reactivate", s.admin(s.withID(s.reactivate)))
	m.HandleFunc("POST "+a+"/users/{id}/lock", s.admin(s.withID(s.lock)))
	m.HandleFunc("POST "+a+"/users/{id}/unlock", s.admin(s.withID(s.unlock)))
	m.HandleFunc("GET "+a+"/user-emails", s.admin(s.listEmails))
	m.HandleFunc("POST "+a+"/user-emails", s.admin(s.addEmail))
	m.HandleFunc("GET "+a+"/upstream-oauth-providers", s.admin(s.listProviders))
	m.HandleFunc("GET "+a+"/upstream-oauth-links", s.admin(s.listLinks))
	m.HandleFunc("POST "+a+"/upstream-oauth-links", s.admin(s.addLink))
	return m
}

// serveHTTP counts the request, applies a queued fault, and answers.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	_, pattern := s.mux.Handler(r)
	if s.o.NoAdminAPI && strings.Contains(pattern, " /api/admin/") {
		pattern = ""
	}
	route := pattern
	if route == "" {
		route = "unrecognized"
	}
	s.mu.Lock()
	s.requests[route]++
	f, faulted := s.takeFaultLocked(route)
	s.mu.Unlock()

	switch {
	case faulted && f.Reset:
		hangUp(w)
		return
	case faulted && f.Status != 0:
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64((f.RetryAfter+time.Second-1)/time.Second), 10))
		}
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.Status)
		text := strconv.Itoa(f.Status) + " " + http.StatusText(f.Status)
		_, _ = io.WriteString(w, "<html><head><title>"+text+"</title></head><body><h1>"+text+"</h1></body></html>\n")
		return
	case faulted && f.Drop:
		s.dispatch(httptest.NewRecorder(), r, pattern)
		hangUp(w)
		return
	}
	s.dispatch(w, r, pattern)
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, pattern string) {
	if pattern == "" {
		// axum's router answers a path it does not know with an empty 404
		// (and a known path with another method with an empty 405; this
		// fake answers 404 for both).
		w.WriteHeader(http.StatusNotFound)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) takeFaultLocked(route string) (Fault, bool) {
	for i, q := range s.faults {
		if q.route != "" && q.route != route {
			continue
		}
		q.left--
		if q.left <= 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		return q.f, true
	}
	return Fault{}, false
}

// hangUp closes the connection with a reset, without an answer.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("mastest: the connection cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
