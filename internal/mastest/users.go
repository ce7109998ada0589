package mastest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
)

type user struct {
	id          string
	username    string
	createdAt   time.Time
	lockedAt    *time.Time
	deactivated *time.Time
	admin       bool
	erase       *bool // the erase flag of the last deactivation; nil if never
	salt        []byte
	hash        []byte // nil: no password
}

// FakeUser seeds a user.
type FakeUser struct {
	Username    string
	Password    string // "" for none
	Admin       bool
	Locked      bool
	Deactivated bool
	Emails      []string
}

// UserState is what the server holds about a user.
type UserState struct {
	ID          string
	Username    string
	Admin       bool
	Locked      bool
	Deactivated bool
	// Erased reports the last deactivation asked for the homeserver to
	// erase the account (skip_erase false); false if never deactivated.
	Erased      bool
	HasPassword bool
	Emails      []string // sorted by ID
}

// AddUser creates a user and returns its ID.
func (s *Server) AddUser(f FakeUser) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.Clock().UTC()
	u := &user{id: s.newID(), username: f.Username, createdAt: now, admin: f.Admin}
	if f.Locked {
		u.lockedAt = &now
	}
	if f.Deactivated {
		u.deactivated = &now
	}
	if f.Password != "" {
		u.setPassword(f.Password)
	}
	s.users[u.id] = u
	for _, e := range f.Emails {
		id := s.newID()
		s.emails[id] = &email{id: id, userID: u.id, address: e, createdAt: now}
	}
	return u.id
}

// User returns the state of the user with this username (exact match).
func (s *Server) User(username string) (UserState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.users {
		if u.username == username {
			st := UserState{ID: u.id, Username: u.username, Admin: u.admin, Locked: u.lockedAt != nil,
				Deactivated: u.deactivated != nil, Erased: u.erase != nil && *u.erase, HasPassword: u.hash != nil}
			for _, id := range sortedKeys(s.emails) {
				if s.emails[id].userID == u.id {
					st.Emails = append(st.Emails, s.emails[id].address)
				}
			}
			return st, true
		}
	}
	return UserState{}, false
}

// Usernames returns every username, in ID order.
func (s *Server) Usernames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range sortedKeys(s.users) {
		out = append(out, s.users[id].username)
	}
	return out
}

// CheckPassword reports whether pw is the user's password.
func (s *Server) CheckPassword(username, pw string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.users {
		if u.username == username && u.hash != nil {
			return subtle.ConstantTimeCompare(u.hash, hashPassword(u.salt, pw)) == 1
		}
	}
	return false
}

func (u *user) setPassword(pw string) {
	u.salt = make([]byte, 16)
	_, _ = rand.Read(u.salt)
	u.hash = hashPassword(u.salt, pw)
}

func hashPassword(salt []byte, pw string) []byte {
	h := sha256.Sum256(append(bytes.Clone(salt), pw...))
	return h[:]
}

// json renders the user's attributes (crates/handlers/src/admin/model.rs,
// User).
func (u *user) attributes() map[string]any {
	return map[string]any{
		"username":       u.username,
		"created_at":     u.createdAt,
		"locked_at":      u.lockedAt,
		"deactivated_at": u.deactivated,
		"admin":          u.admin,
		"legacy_guest":   false,
	}
}

// single writes a SingleResponse (crates/handlers/src/admin/response.rs):
// self links are the canonical path unless the handler gives another.
func single(w http.ResponseWriter, status int, kind, canonical, id string, attrs map[string]any, self string) {
	if self == "" {
		self = canonical + "/" + id
	}
	writeJSON(w, status, map[string]any{
		"data": map[string]any{
			"type":       kind,
			"id":         id,
			"attributes": attrs,
			"links":      map[string]string{"self": canonical + "/" + id},
		},
		"links": map[string]string{"self": self},
	})
}

const usersPath = "/api/admin/v1/users"

// withID extracts the {id} path parameter as UlidPathParam does
// (crates/handlers/src/admin/params.rs): not a ULID → 400.
func (s *Server) withID(h func(w http.ResponseWriter, r *http.Request, id string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := parseULID(r.PathValue("id"))
		if !ok {
			// The path rejection's own causes follow in MAS; left out here.
			adminError(w, http.StatusBadRequest, "Invalid ULID in path")
			return
		}
		h(w, r, id)
	}
}

// readJSON does what axum's Json extractor does before the handler runs:
// 415 without a JSON Content-Type, 400 for a syntax error, 422 for a body
// that does not fit the request type (plain-text bodies, not MAS's JSON).
// required names fields the request type has no default for.
func readJSON(w http.ResponseWriter, r *http.Request, dst any, required ...string) bool {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/json" && !strings.HasSuffix(ct, "+json") {
		plain(w, http.StatusUnsupportedMediaType, "Expected request with `Content-Type: application/json`")
		return false
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, 2<<20))
	if err != nil {
		plain(w, http.StatusBadRequest, "Failed to buffer the request body")
		return false
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			plain(w, http.StatusBadRequest, "Failed to parse the request body as JSON: "+err.Error())
			return false
		}
		plain(w, http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: "+err.Error())
		return false
	}
	for _, f := range required {
		if _, ok := fields[f]; !ok {
			plain(w, http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: missing field `"+f+"`")
			return false
		}
	}
	if err := json.Unmarshal(data, dst); err != nil {
		plain(w, http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: "+err.Error())
		return false
	}
	return true
}

func plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

// siteConfig is GET site-config (crates/handlers/src/admin/v1/
// site_config.rs): a plain object.
func (s *Server) siteConfig(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"server_name":                          s.o.ServerName,
		"password_login_enabled":               !s.o.PasswordsDisabled,
		"password_registration_enabled":        false,
		"password_registration_email_required": true,
		"password_registration_token_required": false,
		"registration_token_required":          false,
		"email_change_allowed":                 true,
		"displayname_change_allowed":           true,
		"password_change_allowed":              !s.o.PasswordsDisabled,
		"account_recovery_allowed":             false,
		"account_deactivation_allowed":         true,
		"captcha_enabled":                      false,
		"minimum_password_complexity":          s.o.MinimumPasswordComplexity,
	})
}

// findUserLocked looks a username up as the storage does
// (crates/storage-pg/src/user/mod.rs, find_by_username): case-insensitively,
// preferring the exact casing when several match.
func (s *Server) findUserLocked(username string) *user {
	var found *user
	for _, u := range s.users {
		if u.username == username {
			return u
		}
		if strings.EqualFold(u.username, username) {
			found = u
		}
	}
	return found
}

// userByUsername is GET users/by-username/{username}
// (crates/handlers/src/admin/v1/users/by_username.rs).
func (s *Server) userByUsername(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("username")
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.findUserLocked(name)
	if u == nil {
		adminError(w, http.StatusNotFound, fmt.Sprintf("User with username %s not found", rustDebug(name)))
		return
	}
	single(w, http.StatusOK, "user", usersPath, u.id, u.attributes(), usersPath+"/by-username/"+name)
}

// rustDebug quotes s as Rust's {:?} does for the usual characters.
func rustDebug(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// getUser is GET users/{id} (.../users/get.rs).
func (s *Server) getUser(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		adminError(w, http.StatusNotFound, "User ID "+id+" not found")
		return
	}
	single(w, http.StatusOK, "user", usersPath, u.id, u.attributes(), "")
}

// validUsername is add.rs's username_valid: 1 to 255 bytes of a-z 0-9 = _ -
// . / +, not starting with _. (All-digit names are accepted.)
func validUsername(name string) bool {
	if name == "" || len(name) > 255 || name[0] == '_' {
		return false
	}
	for _, c := range name {
		ok := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strings.ContainsRune("=_-./+", c)
		if !ok {
			return false
		}
	}
	return true
}

// addUser is POST users (crates/handlers/src/admin/v1/users/add.rs).
func (s *Server) addUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username            string  `json:"username"`
		SkipHomeserverCheck bool    `json:"skip_homeserver_check"`
		DisplayName         *string `json:"displayname"`
		AvatarURL           *string `json:"avatar_url"`
	}
	if !readJSON(w, r, &req, "username") {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The order of the checks is add.rs's: an existing user (compared
	// case-insensitively by UserRepository::exists) before the syntax,
	// the syntax before the homeserver.
	for _, u := range s.users {
		if strings.EqualFold(u.username, req.Username) {
			adminError(w, http.StatusConflict, "User already exists")
			return
		}
	}
	if !validUsername(req.Username) {
		adminError(w, http.StatusBadRequest, "Username is not valid")
		return
	}
	if contains(s.o.ReservedUsernames, req.Username) && !req.SkipHomeserverCheck {
		adminError(w, http.StatusConflict, "Username is reserved by the homeserver")
		return
	}
	now := s.o.Clock().UTC()
	u := &user{id: s.newID(), username: req.Username, createdAt: now}
	s.users[u.id] = u
	if hook := s.o.OnUserCreated; hook != nil {
		s.mu.Unlock()
		hook(u.username)
		s.mu.Lock()
	}
	single(w, http.StatusCreated, "user", usersPath, u.id, u.attributes(), "")
}

// setPassword is POST users/{id}/set-password (.../users/set_password.rs).
func (s *Server) setPassword(w http.ResponseWriter, r *http.Request, id string) {
	var req struct {
		Password          string `json:"password"`
		SkipPasswordCheck *bool  `json:"skip_password_check"`
	}
	if !readJSON(w, r, &req, "password") {
		return
	}
	// Disabled passwords are checked before the user is looked up.
	if s.o.PasswordsDisabled {
		adminError(w, http.StatusForbidden, "Password auth is disabled")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		adminError(w, http.StatusNotFound, "User ID "+id+" not found")
		return
	}
	if (req.SkipPasswordCheck == nil || !*req.SkipPasswordCheck) && s.o.WeakPassword(req.Password) {
		adminError(w, http.StatusBadRequest, "Password is too weak")
		return
	}
	u.setPassword(req.Password)
	w.WriteHeader(http.StatusNoContent)
}

// userAction runs fn on an existing user and answers the user, with the
// action's path as the top-level self link (set_admin.rs, deactivate.rs,
// reactivate.rs, lock.rs, unlock.rs: 404 "User ID … not found" otherwise).
func (s *Server) userAction(w http.ResponseWriter, id, action string, fn func(u *user)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		adminError(w, http.StatusNotFound, "User ID "+id+" not found")
		return
	}
	fn(u)
	single(w, http.StatusOK, "user", usersPath, u.id, u.attributes(), usersPath+"/"+id+"/"+action)
}

// setAdmin is POST users/{id}/set-admin (.../users/set_admin.rs).
func (s *Server) setAdmin(w http.ResponseWriter, r *http.Request, id string) {
	var req struct {
		Admin bool `json:"admin"`
	}
	if !readJSON(w, r, &req, "admin") {
		return
	}
	s.userAction(w, id, "set-admin", func(u *user) { u.admin = req.Admin })
}

// deactivate is POST users/{id}/deactivate (.../users/deactivate.rs). The
// body is optional; deactivating twice keeps the first timestamp
// (crates/storage-pg/src/user/mod.rs, deactivate). The homeserver side
// (erase, leave rooms) happens in a job MAS schedules; the fake records the
// erase flag.
func (s *Server) deactivate(w http.ResponseWriter, r *http.Request, id string) {
	var req struct {
		SkipErase bool `json:"skip_erase"`
	}
	if r.Header.Get("Content-Type") != "" && !readJSON(w, r, &req) {
		return
	}
	now := s.o.Clock().UTC()
	s.userAction(w, id, "deactivate", func(u *user) {
		if u.deactivated == nil {
			u.deactivated = &now
		}
		erase := !req.SkipErase
		u.erase = &erase
	})
}

// reactivate is POST users/{id}/reactivate (.../users/reactivate.rs): it
// does not unlock.
func (s *Server) reactivate(w http.ResponseWriter, r *http.Request, id string) {
	s.userAction(w, id, "reactivate", func(u *user) { u.deactivated = nil })
}

// lock and unlock are POST users/{id}/lock and /unlock (lock.rs, unlock.rs).
func (s *Server) lock(w http.ResponseWriter, r *http.Request, id string) {
	now := s.o.Clock().UTC()
	s.userAction(w, id, "lock", func(u *user) {
		if u.lockedAt == nil {
			u.lockedAt = &now
		}
	})
}

func (s *Server) unlock(w http.ResponseWriter, r *http.Request, id string) {
	s.userAction(w, id, "unlock", func(u *user) { u.lockedAt = nil })
}

// listUsers is GET users (.../users/list.rs), without its filters.
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	p, ok := parsePagination(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []item
	for _, id := range sortedKeys(s.users) {
		items = append(items, item{id: id, attrs: s.users[id].attributes()})
	}
	p.write(w, "user", usersPath, usersPath, items)
}
