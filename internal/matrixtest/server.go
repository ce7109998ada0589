// Package matrixtest is a fake Matrix homeserver over real HTTP, for tests of
// code that provisions accounts. It speaks two dialects, Synapse and Dendrite
// v0.13.8, and answers the endpoints this project uses the way those servers
// do: status codes, errcodes and messages were read from their source
// (Synapse's synapse/rest/admin/users.py, synapse/rest/client/*.py,
// synapse/api/auth; Dendrite's clientapi/routing) and, for Dendrite, checked
// against a running server. Faults (latency, resets, dropped answers, 5xx,
// 429 storms) can be injected per request.
//
// Passwords are kept as salted SHA-256 hashes: enough to let tests check them,
// and nothing to imitate. Everything is safe for concurrent use.
package matrixtest

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provision-matrix/provision/internal/matrix"
)

// Dialect is the homeserver implementation to imitate.
type Dialect int

const (
	Synapse  Dialect = iota // Synapse v1.157
	Dendrite                // Dendrite v0.13.8
)

func (d Dialect) String() string {
	if d == Dendrite {
		return "dendrite"
	}
	return "synapse"
}

// Options configure a Server.
type Options struct {
	Dialect Dialect
	// ServerName is the server part of user IDs: "example.org" for Synapse,
	// "localhost" for Dendrite when empty.
	ServerName string
	// SharedSecret is the registration shared secret; "" means none is
	// configured (Synapse: POST answers 400 M_UNKNOWN "Shared secret
	// registration is not enabled"; Dendrite: the endpoint is absent, 404).
	SharedSecret string
	// AdminToken, when set, is an access token of the server admin AdminUser,
	// created with the server.
	AdminToken string
	// AdminUser is the admin's localpart; "admin" when empty.
	AdminUser string
	// PasswordPolicy is published at /_matrix/client/v3/password_policy
	// (Synapse only: Dendrite answers 404); nil publishes {}.
	PasswordPolicy *matrix.PasswordPolicy
	// NoAdminAPI hides the Synapse admin API (all of /_synapse/admin but the
	// shared-secret endpoint) behind a non-Matrix 404, like a reverse proxy
	// that does not forward it. Dendrite never has the admin API.
	NoAdminAPI bool
	// RegistrationEnabled turns Synapse's public registration on, so that
	// /register/available answers instead of 403 M_FORBIDDEN.
	RegistrationEnabled bool
	// MAS makes Synapse delegate authentication to Matrix Authentication
	// Service: the shared-secret endpoint is not there (404).
	MAS bool
	// NoFederation makes /_matrix/key/v2/server answer 404, as a server with
	// federation disabled does.
	NoFederation bool
	// Faults, if set, is consulted on every request; it must be safe for
	// concurrent use. See FaultN.
	Faults func(r *http.Request) Fault
	// Clock is the time for nonce expiry; time.Now when nil.
	Clock func() time.Time
}

// Counts are what the server has seen and done.
type Counts struct {
	Requests      map[string]int // by route, e.g. "POST /_synapse/admin/v1/register"; "unrecognized" for the rest
	Registrations int            // accounts created (shared secret or admin PUT)
	Logins        int            // successful logins
	Logouts       int            // successful logouts
	RateLimited   int            // 429 answers sent
	Faults        int            // requests answered (or not) by a Fault
}

// Server is a running fake homeserver.
type Server struct {
	o   Options
	srv *httptest.Server
	mux *http.ServeMux

	mu      sync.Mutex
	users   map[string]*user // by localpart as stored
	tokens  map[string]session
	nonces  map[string]time.Time // nonce → time handed out
	rooms   map[string]*room     // by room ID
	aliases map[string]string    // alias → room ID
	counts  Counts
}

type session struct {
	localpart string
	device    string
}

type room struct {
	id      string
	members map[string]bool // user IDs
}

// NewServer starts a server and stops it when the test ends.
func NewServer(t testing.TB, o Options) *Server {
	t.Helper()
	if o.ServerName == "" {
		o.ServerName = "example.org"
		if o.Dialect == Dendrite {
			o.ServerName = "localhost"
		}
	}
	if o.AdminUser == "" {
		o.AdminUser = "admin"
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	s := &Server{
		o:       o,
		users:   map[string]*user{},
		tokens:  map[string]session{},
		nonces:  map[string]time.Time{},
		rooms:   map[string]*room{},
		aliases: map[string]string{},
		counts:  Counts{Requests: map[string]int{}},
	}
	s.mux = s.routes()
	if o.AdminToken != "" {
		s.mu.Lock()
		u := s.addUserLocked(FakeUser{Localpart: o.AdminUser, Admin: true}, "")
		s.openSessionLocked(u, o.AdminToken)
		s.mu.Unlock()
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the homeserver's base URL (http://127.0.0.1:port).
func (s *Server) URL() string { return s.srv.URL }

// Client returns an HTTP client for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// ServerName is the server part of user IDs.
func (s *Server) ServerName() string { return s.o.ServerName }

// UserID returns @localpart:servername.
func (s *Server) UserID(localpart string) string { return "@" + localpart + ":" + s.o.ServerName }

// Counts returns a snapshot of what the server has seen.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts
	c.Requests = maps.Clone(s.counts.Requests)
	return c
}

// Restart drops every connection and every nonce, like a restart of the
// process; accounts, sessions and rooms persist (they live in the database).
func (s *Server) Restart() {
	s.mu.Lock()
	clear(s.nonces)
	s.mu.Unlock()
	s.srv.CloseClientConnections()
}

// AddRoom creates a room that Join can put users in; alias may be "".
func (s *Server) AddRoom(roomID, alias string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rooms[roomID] = &room{id: roomID, members: map[string]bool{}}
	if alias != "" {
		s.aliases[alias] = roomID
	}
}

// Members returns the user IDs joined to a room, sorted.
func (s *Server) Members(roomID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rooms[roomID]
	if !ok {
		return nil
	}
	return slices.Sorted(maps.Keys(r.members))
}

// routes maps each endpoint to its handler. Client endpoints answer on both
// r0 and v3, as Synapse's client_patterns do.
func (s *Server) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /_matrix/client/versions", s.versions)
	m.HandleFunc("GET /_matrix/key/v2/server", s.serverKeys)
	for _, v := range []string{"r0", "v3"} {
		p := "/_matrix/client/" + v
		m.HandleFunc("POST "+p+"/login", s.login)
		m.HandleFunc("POST "+p+"/logout", s.logout)
		m.HandleFunc("GET "+p+"/account/whoami", s.whoami)
		m.HandleFunc("GET "+p+"/register/available", s.registerAvailable)
		m.HandleFunc("GET "+p+"/password_policy", s.passwordPolicy)
		m.HandleFunc("GET "+p+"/directory/room/{alias}", s.directoryRoom)
	}
	m.HandleFunc("GET /_synapse/admin/v1/register", s.nonce)
	m.HandleFunc("POST /_synapse/admin/v1/register", s.register)
	m.HandleFunc("GET /_synapse/admin/v1/server_version", s.serverVersion)
	m.HandleFunc("GET /_synapse/admin/v2/users", s.listUsers)
	m.HandleFunc("GET /_synapse/admin/v2/users/{userID}", s.getUser)
	m.HandleFunc("PUT /_synapse/admin/v2/users/{userID}", s.putUser)
	m.HandleFunc("POST /_synapse/admin/v1/deactivate/{userID}", s.deactivate)
	m.HandleFunc("POST /_synapse/admin/v1/join/{room}", s.join)
	m.HandleFunc("GET /_synapse/admin/v1/username_available", s.adminUsernameAvailable)
	m.HandleFunc("GET /_synapse/admin/v1/users/{userID}/joined_rooms", s.joinedRooms)
	s.leaveRoutes(m) // leave.go
	return m
}

// serveHTTP finds the route, counts it, applies the fault if any, and
// answers like the chosen dialect.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	_, pattern := s.mux.Handler(r)
	pattern = s.visible(pattern)
	s.mu.Lock()
	s.counts.Requests[routeKey(pattern)]++
	s.mu.Unlock()

	var f Fault
	if s.o.Faults != nil {
		f = s.o.Faults(r)
	}
	handler := func(w http.ResponseWriter, r *http.Request) { s.dispatch(w, r, pattern) }
	s.applyFault(w, r, f, handler)
}

func routeKey(pattern string) string {
	if pattern == "" {
		return "unrecognized"
	}
	return pattern
}

// visible returns the pattern that serves r on this server, or "" for a path
// that does not exist here.
func (s *Server) visible(pattern string) string {
	if pattern == "" {
		return ""
	}
	isRegister := strings.HasSuffix(pattern, " /_synapse/admin/v1/register")
	isAdmin := strings.Contains(pattern, " /_synapse/admin/") && !isRegister
	switch {
	case isAdmin && (s.o.Dialect == Dendrite || s.o.NoAdminAPI):
		return ""
	case s.o.Dialect == Dendrite && strings.HasSuffix(pattern, "/password_policy"):
		return ""
	case s.o.Dialect == Dendrite && isRegister && s.o.SharedSecret == "":
		// Dendrite registers the route only when a secret is configured
		// (clientapi/routing/routing.go).
		return ""
	case s.o.Dialect == Synapse && isRegister && s.o.MAS:
		return ""
	case s.o.NoFederation && strings.HasSuffix(pattern, " /_matrix/key/v2/server"):
		return ""
	}
	return pattern
}

// otherMethod reports whether the path exists here for another method.
func (s *Server) otherMethod(r *http.Request) bool {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut} {
		if m == r.Method {
			continue
		}
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, p := s.mux.Handler(r2); s.visible(p) != "" {
			return true
		}
	}
	return false
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, pattern string) {
	proxied := s.o.Dialect == Synapse && s.o.NoAdminAPI && strings.HasPrefix(r.URL.Path, "/_synapse/admin/") &&
		r.URL.Path != "/_synapse/admin/v1/register"
	if pattern == "" && !proxied && s.otherMethod(r) {
		// Both servers: 405 M_UNRECOGNIZED for a known path.
		writeError(w, http.StatusMethodNotAllowed, matrix.ErrcodeUnrecognized, "Unrecognized request")
		return
	}
	if pattern == "" {
		if proxied {
			// What nginx answers for a location it does not proxy.
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte("<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"))
			return
		}
		// Both servers: 404 {"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}.
		writeError(w, http.StatusNotFound, matrix.ErrcodeUnrecognized, "Unrecognized request")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// randomHex returns n random bytes as hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// randomLetters returns n random uppercase letters, the shape of Synapse's
// device IDs.
func randomLetters(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = 'A' + b[i]%26
	}
	return string(b)
}
