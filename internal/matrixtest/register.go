package matrixtest

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/provision-matrix/provision/internal/matrix"
)

const (
	// synapseNonceTimeout: UserRegisterServlet.NONCE_TIMEOUT (synapse/rest/admin/users.py).
	synapseNonceTimeout = 60 // seconds, compared in whole seconds as Synapse does
	// dendriteNonceTimeout: NewSharedSecretRegistration's cache
	// (clientapi/routing/register_secret.go).
	dendriteNonceTimeout = 5 * time.Minute
	// dendriteDevice is the device every Dendrite shared-secret registration
	// opens, inhibit_login or not (clientapi/routing/register.go).
	dendriteDevice = "shared_secret_registration"
)

// synapseUserTypes: UserTypes.ALL_USER_TYPES (synapse/api/constants.py).
var synapseUserTypes = map[string]bool{"support": true, "bot": true}

// nonce hands out a registration nonce: Synapse's is token_hex(64), Dendrite's
// 16 random characters. Synapse answers even without a configured secret.
func (s *Server) nonce(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireNoncesLocked()
	n := randomHex(64)
	if s.o.Dialect == Dendrite {
		n = randomHex(8)
	}
	s.nonces[n] = s.o.Clock()
	writeJSON(w, http.StatusOK, map[string]string{"nonce": n})
}

func (s *Server) expireNoncesLocked() {
	now := s.o.Clock()
	for n, t := range s.nonces {
		if s.nonceExpired(t, now) {
			delete(s.nonces, n)
		}
	}
}

func (s *Server) nonceExpired(issued, now time.Time) bool {
	if s.o.Dialect == Dendrite {
		return now.After(issued.Add(dendriteNonceTimeout))
	}
	return now.Unix()-issued.Unix() > synapseNonceTimeout
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.o.Dialect == Dendrite {
		s.registerDendrite(w, r)
	} else {
		s.registerSynapse(w, r)
	}
}

// registerSynapse follows UserRegisterServlet.on_POST
// (synapse/rest/admin/users.py) step by step: the order decides which error
// a bad request gets, and when the nonce is spent.
func (s *Server) registerSynapse(w http.ResponseWriter, r *http.Request) {
	s.expireNoncesLocked()
	if s.o.SharedSecret == "" {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, "Shared secret registration is not enabled")
		return
	}
	body, ok := readObject(w, r, false)
	if !ok {
		return
	}
	nonceV, ok := body["nonce"]
	if !ok {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeBadJSON, "nonce must be specified")
		return
	}
	nonce, _ := nonceV.(string)
	if _, known := s.nonces[nonce]; !known || nonce == "" {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, "unrecognised nonce")
		return
	}
	// Deleted before anything else is checked, so a failed POST spends it.
	delete(s.nonces, nonce)

	usernameV, ok := body["username"]
	if !ok {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeBadJSON, "username must be specified")
		return
	}
	username, isStr := usernameV.(string)
	if !isStr || utf8.RuneCountInString(username) > 512 || strings.ContainsRune(username, 0) {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, "Invalid username")
		return
	}
	passwordV, ok := body["password"]
	if !ok {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeBadJSON, "password must be specified")
		return
	}
	password, isStr := passwordV.(string)
	if !isStr || utf8.RuneCountInString(password) > 512 || strings.ContainsRune(password, 0) {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, "Invalid password")
		return
	}
	admin := truthy(body["admin"])
	userTypeV := body["user_type"]
	userType, _ := userTypeV.(string)
	if userTypeV != nil && !synapseUserTypes[userType] {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, "Invalid user type")
		return
	}
	macV, ok := body["mac"]
	if !ok {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeBadJSON, "mac must be specified")
		return
	}
	gotMAC, _ := macV.(string)
	fields := []string{nonce, username, password, map[bool]string{true: "admin", false: "notadmin"}[admin]}
	if userType != "" {
		fields = append(fields, userType)
	}
	if !hmac.Equal([]byte(gotMAC), []byte(macHex(s.o.SharedSecret, fields))) {
		writeError(w, http.StatusForbidden, matrix.ErrcodeUnknown, "HMAC incorrect")
		return
	}

	lp := strings.ToLower(username)
	if status, code, msg := s.synapseCheckUsernameLocked(lp); status != 0 {
		writeError(w, status, code, msg)
		return
	}
	displayName, _ := body["displayname"].(string)
	if displayName == "" {
		displayName = lp // register_user's default_display_name
	}
	u := s.addUserLocked(FakeUser{Localpart: lp, DisplayName: displayName, Admin: admin, UserType: userType}, password)
	s.counts.Registrations++
	res := map[string]string{"user_id": s.UserID(lp), "home_server": s.o.ServerName}
	// _create_registration_details (synapse/rest/client/register.py): no
	// session when inhibit_login is truthy.
	if !truthy(body["inhibit_login"]) {
		tok, dev := s.openSessionLocked(u, "")
		res["access_token"], res["device_id"] = tok, dev
	}
	writeJSON(w, http.StatusOK, res)
}

// synapseCheckUsernameLocked is RegistrationHandler.check_username
// (synapse/handlers/register.py); status 0 means the localpart is free and valid.
func (s *Server) synapseCheckUsernameLocked(lp string) (int, string, string) {
	for _, c := range lp {
		if !strings.ContainsRune("_-./=+abcdefghijklmnopqrstuvwxyz0123456789", c) {
			return http.StatusBadRequest, matrix.ErrcodeInvalidUsername, "User ID can only contain characters a-z, 0-9, or '=_-./+'"
		}
	}
	switch {
	case lp == "":
		return http.StatusBadRequest, matrix.ErrcodeInvalidUsername, "User ID cannot be empty"
	case lp[0] == '_':
		return http.StatusBadRequest, matrix.ErrcodeInvalidUsername, "User ID may not begin with _"
	case len(s.UserID(lp)) > 255:
		return http.StatusBadRequest, matrix.ErrcodeInvalidUsername, "User ID may not be longer than 255 characters"
	case s.lookupFoldLocked(lp) != nil:
		return http.StatusBadRequest, matrix.ErrcodeUserInUse, "User ID already taken."
	case strings.Trim(lp, "0123456789") == "":
		return http.StatusBadRequest, matrix.ErrcodeInvalidUsername, "Numeric user IDs are reserved for guest users."
	}
	return 0, "", ""
}

// dendriteUsername is internal.validUsernameRegex (Dendrite's internal/validate.go).
var dendriteUsername = regexp.MustCompile(`^[0-9a-z_\-+=./]+$`)

// registerDendrite follows handleSharedSecretRegistration
// (clientapi/routing/register.go) and IsValidMacLogin
// (clientapi/routing/register_secret.go). Its request type has no user_type
// field: a MAC that covers one never matches.
func (s *Server) registerDendrite(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User        string `json:"username"`
		Password    string `json:"password"`
		Nonce       string `json:"nonce"`
		Mac         string `json:"mac"`
		Admin       bool   `json:"admin"`
		DisplayName string `json:"displayname"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeBadJSON, "malformed json: "+err.Error())
		return
	}
	givenMAC, err := hex.DecodeString(req.Mac)
	if err != nil {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeBadJSON, "malformed json: "+err.Error())
		return
	}
	// util.ErrorResponse: a bare 500 {"message": ...}, not a Matrix error.
	issued, known := s.nonces[req.Nonce]
	if !known || s.nonceExpired(issued, s.o.Clock()) {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"message": "incorrect or expired nonce: " + req.Nonce})
		return
	}
	if strings.ContainsRune(req.User, 0) {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"message": "username contains invalid character"})
		return
	}
	if strings.ContainsRune(req.Password, 0) {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"message": "password contains invalid character"})
		return
	}
	adminStr := "notadmin"
	if req.Admin {
		adminStr = "admin"
	}
	want, _ := hex.DecodeString(macHex(s.o.SharedSecret, []string{req.Nonce, req.User, req.Password, adminStr}))
	if !hmac.Equal(givenMAC, want) {
		writeError(w, http.StatusForbidden, matrix.ErrcodeForbidden, "bad mac")
		return
	}
	lp := strings.ToLower(req.User)
	switch {
	case len(s.UserID(lp)) > 254:
		writeError(w, http.StatusBadRequest, matrix.ErrcodeBadJSON, "username exceeds the maximum length of 254 characters")
		return
	case !dendriteUsername.MatchString(lp):
		writeError(w, http.StatusBadRequest, matrix.ErrcodeInvalidUsername, "username can only contain characters a-z, 0-9, or '_+-./='")
		return
	case lp[0] == '_':
		writeError(w, http.StatusBadRequest, matrix.ErrcodeInvalidUsername, "username cannot start with a '_'")
		return
	case len(req.Password) > 512:
		writeError(w, http.StatusBadRequest, matrix.ErrcodeBadJSON, "password too long: max 512 characters")
		return
	case len(req.Password) > 0 && len(req.Password) < 8:
		writeError(w, http.StatusBadRequest, matrix.ErrcodeWeakPassword, "password too weak: min 8 characters")
		return
	case req.Password == "":
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "Missing password")
		return
	case s.users[lp] != nil:
		writeError(w, http.StatusBadRequest, matrix.ErrcodeUserInUse, "Desired user ID is already taken.")
		return
	}
	displayName := req.DisplayName
	if displayName == "" {
		displayName = lp
	}
	u := s.addUserLocked(FakeUser{Localpart: lp, DisplayName: displayName, Admin: req.Admin}, req.Password)
	s.counts.Registrations++
	// Seen on a running Dendrite v0.13.8: inhibit_login is ignored.
	tok := "dendrite_" + randomHex(16)
	u.devices[dendriteDevice] = true
	s.tokens[tok] = session{localpart: lp, device: dendriteDevice}
	writeJSON(w, http.StatusOK, map[string]string{"user_id": s.UserID(lp), "access_token": tok, "device_id": dendriteDevice})
}

// macHex is the registration MAC, computed here independently of the
// matrix package so that a bug there cannot hide in both.
func macHex(secret string, fields []string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(strings.Join(fields, "\x00")))
	return hex.EncodeToString(m.Sum(nil))
}
