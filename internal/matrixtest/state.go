package matrixtest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/provision-matrix/provision/internal/matrix"
)

// FakeUser is an account on the fake server, as tests see it.
type FakeUser struct {
	Localpart   string // set on the way in (or UserID); always set on the way out
	UserID      string
	DisplayName string
	AvatarURL   string
	Admin       bool
	Deactivated bool
	Locked      bool
	Erased      bool
	UserType    string
	HasPassword bool // out only; AddUser's password argument sets it
	Devices     int  // sessions (devices with an access token)
	ThreePIDs   []matrix.ThreePID
	ExternalIDs []matrix.ExternalID
}

type user struct {
	localpart   string
	displayName string
	avatarURL   string
	admin       bool
	deactivated bool
	locked      bool
	erased      bool
	userType    string
	salt, hash  []byte // hash nil: no password, cannot log in
	devices     map[string]bool
	threepids   []matrix.ThreePID
	externalIDs []matrix.ExternalID
	created     int64
}

// AddUser creates an account as if it already existed (the admin, bots,
// earlier runs). password "" leaves it without one. u.Devices sessions are
// opened on it; their tokens are not needed by tests (see NewSession).
func (s *Server) AddUser(u FakeUser, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nu := s.addUserLocked(u, password)
	for range u.Devices {
		s.openSessionLocked(nu, "")
	}
}

func (s *Server) addUserLocked(u FakeUser, password string) *user {
	lp := u.Localpart
	if lp == "" {
		lp = localpartOf(u.UserID)
	}
	nu := &user{
		localpart:   lp,
		displayName: u.DisplayName,
		avatarURL:   u.AvatarURL,
		admin:       u.Admin,
		deactivated: u.Deactivated,
		locked:      u.Locked,
		erased:      u.Erased,
		userType:    u.UserType,
		devices:     map[string]bool{},
		threepids:   slices.Clone(u.ThreePIDs),
		externalIDs: slices.Clone(u.ExternalIDs),
		created:     s.o.Clock().UnixMilli(),
	}
	if password != "" {
		nu.setPassword(password)
	}
	s.users[lp] = nu
	return nu
}

// NewSession opens a session for an existing account, as a login would, and
// returns its access token ("" if there is no such account).
func (s *Server) NewSession(localpart string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[localpart]
	if !ok {
		return ""
	}
	tok, _ := s.openSessionLocked(u, "")
	return tok
}

// User returns the account with exactly this localpart.
func (s *Server) User(localpart string) (FakeUser, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[localpart]
	if !ok {
		return FakeUser{}, false
	}
	return s.fake(u), true
}

// Users returns every account, ordered by user ID.
func (s *Server) Users() []FakeUser {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FakeUser, 0, len(s.users))
	for _, u := range s.sortedUsersLocked() {
		out = append(out, s.fake(u))
	}
	return out
}

// SSOLogin finds the account a single sign-on login with this provider
// (Synapse's auth_provider, e.g. "oidc-okta") and subject would land on, as
// SsoHandler.get_sso_user_by_remote_user_id does with
// get_user_by_external_id (synapse/handlers/sso.py): the account holding
// that exact external ID. ok is false when there is none, and also when
// the login would then be refused: a deactivated account
// (AuthHandler.complete_sso_login answers 403) or a locked one (the login
// token's exchange in synapse/rest/client/login.py refuses it); userID
// still names the account then. It opens no session: a test that goes on
// as the user calls NewSession. (A real Synapse with registration on would
// create a new account for an unknown subject; tests want to know that
// none was bound.)
func (s *Server) SSOLogin(provider, subject string) (userID string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := matrix.ExternalID{AuthProvider: provider, ExternalID: subject}
	for _, u := range s.users {
		if slices.Contains(u.externalIDs, want) {
			return s.UserID(u.localpart), !u.deactivated && !u.locked
		}
	}
	return "", false
}

// CheckPassword reports whether password is the account's current password.
func (s *Server) CheckPassword(localpart, password string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[localpart]
	return ok && u.checkPassword(password)
}

func (s *Server) fake(u *user) FakeUser {
	return FakeUser{
		Localpart:   u.localpart,
		UserID:      s.UserID(u.localpart),
		DisplayName: u.displayName,
		AvatarURL:   u.avatarURL,
		Admin:       u.admin,
		Deactivated: u.deactivated,
		Locked:      u.locked,
		Erased:      u.erased,
		UserType:    u.userType,
		HasPassword: u.hash != nil,
		Devices:     len(u.devices),
		ThreePIDs:   slices.Clone(u.threepids),
		ExternalIDs: slices.Clone(u.externalIDs),
	}
}

func (s *Server) sortedUsersLocked() []*user {
	us := make([]*user, 0, len(s.users))
	for _, u := range s.users {
		us = append(us, u)
	}
	// Synapse orders by the user ID column ("name"), which for one server
	// name is the localpart's order.
	slices.SortFunc(us, func(a, b *user) int { return strings.Compare(a.localpart, b.localpart) })
	return us
}

// lookupFoldLocked finds an account whose localpart equals lp ignoring case,
// as Synapse's get_users_by_id_case_insensitive does.
func (s *Server) lookupFoldLocked(lp string) *user {
	if u, ok := s.users[lp]; ok {
		return u
	}
	for _, u := range s.users {
		if strings.EqualFold(u.localpart, lp) {
			return u
		}
	}
	return nil
}

// localUser splits a user ID of this server into its localpart; ok is false
// for a malformed or remote ID.
func (s *Server) localUser(userID string) (lp string, ok bool) {
	if !strings.HasPrefix(userID, "@") {
		return "", false
	}
	lp, server, found := strings.Cut(userID[1:], ":")
	return lp, found && server == s.o.ServerName
}

func localpartOf(userID string) string {
	lp, _, _ := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	return lp
}

func (u *user) setPassword(pw string) {
	u.salt = make([]byte, 16)
	_, _ = rand.Read(u.salt)
	u.hash = hashPassword(u.salt, pw)
}

func (u *user) checkPassword(pw string) bool {
	return u.hash != nil && subtle.ConstantTimeCompare(u.hash, hashPassword(u.salt, pw)) == 1
}

func hashPassword(salt []byte, pw string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(pw))
	return h.Sum(nil)
}

// openSessionLocked creates a device with an access token (tok, or a random
// one when tok is "") and returns both.
func (s *Server) openSessionLocked(u *user, tok string) (string, string) {
	dev := randomLetters(10)
	if tok == "" {
		tok = "syt_" + randomHex(16)
	}
	u.devices[dev] = true
	s.tokens[tok] = session{localpart: u.localpart, device: dev}
	return tok, dev
}

// deleteDevicesLocked logs out u's devices, except keep (if not "").
func (s *Server) deleteDevicesLocked(u *user, keep string) {
	for tok, sess := range s.tokens {
		if sess.localpart == u.localpart && sess.device != keep {
			delete(s.tokens, tok)
		}
	}
	for dev := range u.devices {
		if dev != keep {
			delete(u.devices, dev)
		}
	}
}

// authenticate finds the session of the request's access token, answering
// 401 as the dialect does when there is none. s.mu must be held.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*user, session, bool) {
	tok, found, msg := s.accessToken(r)
	if !found {
		writeError(w, http.StatusUnauthorized, matrix.ErrcodeMissingToken, msg)
		return nil, session{}, false
	}
	sess, ok := s.tokens[tok]
	u := s.users[sess.localpart]
	if !ok || u == nil {
		if s.o.Dialect == Dendrite {
			writeError(w, http.StatusUnauthorized, matrix.ErrcodeUnknownToken, "Unknown token")
		} else {
			// synapse/api/auth/internal.py: InvalidClientTokenError, with soft_logout.
			writeJSON(w, http.StatusUnauthorized, map[string]any{
				"errcode": matrix.ErrcodeUnknownToken, "error": "Invalid access token passed.", "soft_logout": false})
		}
		return nil, session{}, false
	}
	return u, sess, true
}

// accessToken reads the token as synapse/api/auth/base.py does: one
// "Authorization: Bearer" header or the access_token query parameter, not
// both. When there is none, found is false and msg is the message for
// M_MISSING_TOKEN.
func (s *Server) accessToken(r *http.Request) (tok string, found bool, msg string) {
	missing := "Missing access token"
	if s.o.Dialect == Dendrite {
		missing = "missing access token"
	}
	headers := r.Header.Values("Authorization")
	query, hasQuery := r.URL.Query()["access_token"]
	switch {
	case len(headers) > 0 && hasQuery:
		return "", false, "Mixing Authorization headers and access_token query parameters."
	case len(headers) > 1:
		return "", false, "Too many Authorization headers."
	case len(headers) == 1:
		parts := strings.Split(headers[0], " ")
		if parts[0] != "Bearer" || len(parts) != 2 {
			return "", false, "Invalid Authorization header."
		}
		return parts[1], true, ""
	case hasQuery && query[0] != "":
		return query[0], true, ""
	}
	return "", false, missing
}

// requireAdmin answers 401/403 unless the request comes from a server admin.
// s.mu must be held.
func (s *Server) requireAdmin(w http.ResponseWriter, r *http.Request) (*user, session, bool) {
	u, sess, ok := s.authenticate(w, r)
	if !ok {
		return nil, session{}, false
	}
	if !u.admin {
		// synapse/rest/admin/_base.py: assert_user_is_admin.
		writeError(w, http.StatusForbidden, matrix.ErrcodeForbidden, "You are not a server admin")
		return nil, session{}, false
	}
	return u, sess, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, errcode, msg string) {
	writeJSON(w, status, map[string]string{"errcode": errcode, "error": msg})
}

// maxRequestBody bounds what the fake reads from a request.
const maxRequestBody = 1 << 20

// readObject parses a JSON object body as Synapse's
// parse_json_object_from_request does, answering 400 if it is not one.
func readObject(w http.ResponseWriter, r *http.Request, allowEmpty bool) (map[string]any, bool) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
		return nil, false
	}
	if allowEmpty && len(bytes.TrimSpace(data)) == 0 {
		return map[string]any{}, true
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
		return nil, false
	}
	obj, ok := v.(map[string]any)
	if !ok {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeBadJSON, "Content must be a JSON object.")
		return nil, false
	}
	return obj, true
}

// truthy is Python's truth value of a decoded JSON value.
func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case string:
		return v != ""
	case json.Number:
		f, err := v.Float64()
		return err != nil || f != 0
	case []any:
		return len(v) > 0
	case map[string]any:
		return len(v) > 0
	}
	return true
}
