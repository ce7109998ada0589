package matrixtest

import (
	"net/http"
	"strings"
	"time"

	"github.com/provision-matrix/provision/internal/matrix"
)

func (s *Server) versions(w http.ResponseWriter, r *http.Request) {
	if s.o.Dialect == Dendrite {
		writeJSON(w, http.StatusOK, map[string]any{
			"versions":          []string{"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.1", "v1.0", "v1.1", "v1.2"},
			"unstable_features": map[string]bool{"org.matrix.e2e_cross_signing": true},
		})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"versions": []string{"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
			"v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12"},
		"unstable_features": map[string]bool{},
	})
}

// serverKeys is the federation key document; only server_name matters here
// (seen on Dendrite v0.13.8 with federation enabled; 404 with it disabled).
func (s *Server) serverKeys(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"server_name":     s.o.ServerName,
		"verify_keys":     map[string]any{"ed25519:auto": map[string]string{"key": "BsS9EAd21Of00/YN/31B2f3mORoK6B894iS3n8fuBSU"}},
		"old_verify_keys": map[string]any{},
		"valid_until_ts":  s.o.Clock().Add(time.Hour).UnixMilli(),
	})
}

// serverVersion is Synapse's unauthenticated VersionServlet
// (synapse/rest/admin/__init__.py).
func (s *Server) serverVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"server_version": "1.157.0"})
}

// login handles m.login.password: Synapse's LoginRestServlet
// (synapse/rest/client/login.py, synapse/handlers/auth.py), Dendrite's
// clientapi/auth/password.go.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	body, ok := readObject(w, r, false)
	if !ok {
		return
	}
	if t, _ := body["type"].(string); t != "m.login.password" {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, "Unknown login type "+t)
		return
	}
	name, _ := body["user"].(string)
	if id, ok := body["identifier"].(map[string]any); ok {
		if t, _ := id["type"].(string); t != "m.id.user" {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Unknown login identifier type")
			return
		}
		name, _ = id["user"].(string)
	}
	if strings.HasPrefix(name, "@") {
		lp, local := s.localUser(name)
		if !local {
			s.wrongPassword(w)
			return
		}
		name = lp
	}
	password, _ := body["password"].(string)
	u := s.lookupFoldLocked(name)
	// An account made without a password (an SSO-only one: the admin PUT
	// with external_ids and no password) has no hash, and
	// _check_local_password (synapse/handlers/auth.py) fails for it like a
	// wrong password: 403 M_FORBIDDEN "Invalid username or password".
	if u == nil || !u.checkPassword(password) {
		s.wrongPassword(w)
		return
	}
	switch {
	case u.deactivated && s.o.Dialect == Dendrite:
		// Dendrite's account look-up skips deactivated accounts.
		s.wrongPassword(w)
		return
	case u.deactivated:
		writeError(w, http.StatusForbidden, matrix.ErrcodeUserDeactivated, "This account has been deactivated")
		return
	case u.locked && s.o.Dialect == Synapse:
		writeError(w, http.StatusUnauthorized, "M_USER_LOCKED", "This account has been locked")
		return
	}
	tok, dev := s.openSessionLocked(u, "")
	s.counts.Logins++
	writeJSON(w, http.StatusOK, map[string]string{
		"user_id": s.UserID(u.localpart), "access_token": tok, "device_id": dev, "home_server": s.o.ServerName})
}

func (s *Server) wrongPassword(w http.ResponseWriter) {
	if s.o.Dialect == Dendrite {
		writeError(w, http.StatusForbidden, matrix.ErrcodeForbidden, "The username or password was incorrect or the account does not exist.")
		return
	}
	writeError(w, http.StatusForbidden, matrix.ErrcodeForbidden, "Invalid username or password")
}

// logout deletes the session's device (synapse/rest/client/logout.py).
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, sess, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	for tok, other := range s.tokens {
		if other == sess {
			delete(s.tokens, tok)
		}
	}
	delete(u.devices, sess.device)
	s.counts.Logouts++
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, sess, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user_id": s.UserID(u.localpart), "device_id": sess.device, "is_guest": false})
}

// registerAvailable: Synapse's UsernameAvailabilityRestServlet
// (synapse/rest/client/register.py) refuses with 403 whenever public
// registration is off; Dendrite's RegisterAvailable answers regardless, after
// lowercasing (seen on a running v0.13.8 with registration_disabled: true).
func (s *Server) registerAvailable(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	username := r.URL.Query().Get("username")
	if s.o.Dialect == Dendrite {
		lp := strings.ToLower(username)
		if l, local := s.localUser(lp); local {
			lp = l
		}
		switch {
		case len(s.UserID(lp)) > 254:
			writeError(w, http.StatusBadRequest, matrix.ErrcodeBadJSON, "username exceeds the maximum length of 254 characters")
		case !dendriteUsername.MatchString(lp):
			writeError(w, http.StatusBadRequest, matrix.ErrcodeInvalidUsername, "username can only contain characters a-z, 0-9, or '_+-./='")
		case lp[0] == '_':
			writeError(w, http.StatusBadRequest, matrix.ErrcodeInvalidUsername, "username cannot start with a '_'")
		case s.users[lp] != nil:
			writeError(w, http.StatusBadRequest, matrix.ErrcodeUserInUse, "Desired User ID is already taken.")
		default:
			writeJSON(w, http.StatusOK, map[string]bool{"available": true})
		}
		return
	}
	if !s.o.RegistrationEnabled {
		writeError(w, http.StatusForbidden, matrix.ErrcodeForbidden, "Registration has been disabled")
		return
	}
	s.usernameAvailableSynapseLocked(w, r)
}

// usernameAvailableSynapseLocked answers with check_username's verdict, on
// the localpart as given: Synapse does not lowercase here.
func (s *Server) usernameAvailableSynapseLocked(w http.ResponseWriter, r *http.Request) {
	username, present := r.URL.Query()["username"]
	if !present {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "Missing string query parameter 'username'")
		return
	}
	if status, code, msg := s.synapseCheckUsernameLocked(username[0]); status != 0 {
		writeError(w, status, code, msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"available": true})
}

// passwordPolicy is PasswordPolicyServlet (synapse/rest/client/password_policy.py):
// {} when no policy is enabled.
func (s *Server) passwordPolicy(w http.ResponseWriter, r *http.Request) {
	res := map[string]any{}
	if p := s.o.PasswordPolicy; p != nil {
		res["m.minimum_length"] = p.MinLength
		res["m.require_digit"] = p.RequireDigit
		res["m.require_symbol"] = p.RequireSymbol
		res["m.require_lowercase"] = p.RequireLowercase
		res["m.require_uppercase"] = p.RequireUppercase
	}
	writeJSON(w, http.StatusOK, res)
}
