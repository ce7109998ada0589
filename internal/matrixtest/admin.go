package matrixtest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/provision-matrix/provision/internal/matrix"
)

// The Synapse admin API, after synapse/rest/admin/users.py, rooms.py and
// username_available.py. Every handler authenticates first (401), then
// checks admin rights (403), as assert_requester_is_admin does.

// userJSON is AdminHandler.get_user (synapse/handlers/admin.py).
func (s *Server) userJSON(u *user) map[string]any {
	threepids := make([]map[string]any, 0, len(u.threepids))
	for _, t := range u.threepids {
		threepids = append(threepids, map[string]any{"medium": t.Medium, "address": t.Address,
			"added_at": u.created, "validated_at": u.created})
	}
	externalIDs := make([]map[string]string, 0, len(u.externalIDs))
	for _, e := range u.externalIDs {
		externalIDs = append(externalIDs, map[string]string{"auth_provider": e.AuthProvider, "external_id": e.ExternalID})
	}
	return map[string]any{
		"name":                       s.UserID(u.localpart),
		"admin":                      u.admin,
		"deactivated":                u.deactivated,
		"locked":                     u.locked,
		"shadow_banned":              false,
		"creation_ts":                u.created,
		"appservice_id":              nil,
		"consent_server_notice_sent": nil,
		"consent_version":            nil,
		"consent_ts":                 nil,
		"user_type":                  nullable(u.userType),
		"is_guest":                   false,
		"suspended":                  false,
		"displayname":                nullable(u.displayName),
		"avatar_url":                 nullable(u.avatarURL),
		"threepids":                  threepids,
		"external_ids":               externalIDs,
		"erased":                     u.erased,
		"last_seen_ts":               nil,
	}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// listUsers is UsersRestServletV2.on_GET: offset paging, ordered by name;
// deactivated and locked accounts only when asked for.
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	q := r.URL.Query()
	from, ok := intParam(w, q, "from", 0)
	if !ok {
		return
	}
	limit, ok := intParam(w, q, "limit", 100)
	if !ok {
		return
	}
	deactivated, locked := q.Get("deactivated") == "true", q.Get("locked") == "true"
	var matched []*user
	for _, u := range s.sortedUsersLocked() {
		if (u.deactivated && !deactivated) || (u.locked && !locked) {
			continue
		}
		matched = append(matched, u)
	}
	total := len(matched)
	page := matched[min(from, total):min(from+limit, total)]
	users := make([]map[string]any, 0, len(page))
	for _, u := range page {
		users = append(users, map[string]any{
			"name": s.UserID(u.localpart), "user_type": nullable(u.userType), "is_guest": false,
			"admin": u.admin, "deactivated": u.deactivated, "shadow_banned": false,
			"displayname": nullable(u.displayName), "avatar_url": nullable(u.avatarURL),
			"creation_ts": u.created, "erased": u.erased, "last_seen_ts": nil, "locked": u.locked,
		})
	}
	res := map[string]any{"users": users, "total": total}
	if from+limit < total {
		res["next_token"] = strconv.Itoa(from + len(page))
	}
	writeJSON(w, http.StatusOK, res)
}

// intParam is parse_integer: a non-negative integer or 400 M_INVALID_PARAM.
func intParam(w http.ResponseWriter, q map[string][]string, name string, def int) (int, bool) {
	v, ok := q[name]
	if !ok {
		return def, true
	}
	n, err := strconv.Atoi(v[0])
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM",
			"Query parameter "+strconv.Quote(name)+" must be a string representing a positive integer.")
		return 0, false
	}
	return n, true
}

// targetUser resolves the {userID} path value, answering 400 for a remote or
// malformed ID with the message the servlet uses.
func (s *Server) targetUser(w http.ResponseWriter, r *http.Request, remoteMsg string) (string, bool) {
	id := r.PathValue("userID")
	if !strings.HasPrefix(id, "@") || !strings.Contains(id, ":") {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Expected UserID string to start with '@'")
		return "", false
	}
	lp, local := s.localUser(id)
	if !local {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, remoteMsg)
		return "", false
	}
	return lp, true
}

// getUser is UserRestServletV2Get.on_GET.
func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	lp, ok := s.targetUser(w, r, "Can only look up local users")
	if !ok {
		return
	}
	u, ok := s.users[lp]
	if !ok {
		writeError(w, http.StatusNotFound, matrix.ErrcodeNotFound, "User not found")
		return
	}
	writeJSON(w, http.StatusOK, s.userJSON(u))
}

// putUser is UserRestServletV2.on_PUT: validation first, then either the
// modification steps in Synapse's order (which are not atomic: a 409 on
// external_ids leaves the display name and threepids already changed) or
// the creation (where a 409 comes after the account exists).
func (s *Server) putUser(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	requester, reqSess, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	body, ok := readObject(w, r, false)
	if !ok {
		return
	}
	lp, ok := s.targetUser(w, r, "This endpoint can only be used with local users")
	if !ok {
		return
	}
	threepids, ok := threepidsParam(w, body)
	if !ok {
		return
	}
	externalIDs, ok := externalIDsParam(w, body)
	if !ok {
		return
	}
	userTypeV, hasUserType := body["user_type"]
	userType, _ := userTypeV.(string)
	if userTypeV != nil && !synapseUserTypes[userType] {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, "Invalid user type")
		return
	}
	setAdmin, ok := boolParam(w, body, "admin", matrix.ErrcodeBadJSON, "Param 'admin' must be a boolean, if given")
	if !ok {
		return
	}
	var password *string
	if v, present := body["password"]; present && v != nil {
		pw, isStr := v.(string)
		if !isStr || len([]rune(pw)) > 512 {
			writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, "Invalid password")
			return
		}
		password = &pw
	}
	logoutDevices := true
	if _, present := body["logout_devices"]; present {
		if logoutDevices, ok = boolParam(w, body, "logout_devices", matrix.ErrcodeUnknown, "'logout_devices' parameter is not of type boolean"); !ok {
			return
		}
	}
	deactivate, ok := boolParam(w, body, "deactivated", matrix.ErrcodeUnknown, "'deactivated' parameter is not of type boolean")
	if !ok {
		return
	}
	lock, ok := boolParam(w, body, "locked", matrix.ErrcodeUnknown, "'locked' parameter is not of type boolean")
	if !ok {
		return
	}
	if deactivate && lock {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, "An user can't be deactivated and locked")
		return
	}

	u, exists := s.users[lp]
	if !exists {
		s.createUserLocked(w, lp, body, password, setAdmin, userType, threepids, externalIDs)
		return
	}
	if dn, present := body["displayname"]; present {
		u.displayName, _ = dn.(string)
	}
	if threepids != nil {
		if !s.setThreepids(w, u, *threepids) {
			return
		}
	}
	if externalIDs != nil {
		// replace_user_external_id (synapse/storage/databases/main/
		// registration.py): in one transaction, delete all of the user's
		// external IDs, then record each of the new ones; any conflict
		// rolls the whole set back, while the display name and threepids
		// changed above stay changed.
		var replaced []matrix.ExternalID
		for _, e := range *externalIDs {
			var ok bool
			if replaced, ok = s.recordExternalIDLocked(u, replaced, e); !ok {
				writeExternalIDInUse(w)
				return
			}
		}
		u.externalIDs = replaced
	}
	if av, present := body["avatar_url"]; present {
		u.avatarURL, _ = av.(string)
	}
	if _, present := body["admin"]; present && setAdmin != u.admin {
		if u == requester && !setAdmin {
			writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, "You may not demote yourself.")
			return
		}
		u.admin = setAdmin
	}
	if password != nil {
		u.setPassword(*password)
		if logoutDevices {
			// set_password keeps the requester's own session.
			keep := ""
			if u == requester {
				keep = reqSess.device
			}
			s.deleteDevicesLocked(u, keep)
		}
	}
	if _, present := body["deactivated"]; present {
		if deactivate && !u.deactivated {
			s.deactivateLocked(u, false)
		} else if !deactivate && u.deactivated {
			u.deactivated = false
		}
	}
	if _, present := body["locked"]; present {
		u.locked = lock
	}
	if hasUserType {
		u.userType = userType
	}
	writeJSON(w, http.StatusOK, s.userJSON(u))
}

func (s *Server) createUserLocked(w http.ResponseWriter, lp string, body map[string]any, password *string,
	admin bool, userType string, threepids *[]matrix.ThreePID, externalIDs *[]matrix.ExternalID) {
	// register_user → check_username: no lowercasing, so "Alice" is invalid,
	// and "alice" is taken if "Alice" exists.
	if status, code, msg := s.synapseCheckUsernameLocked(lp); status != 0 {
		writeError(w, status, code, msg)
		return
	}
	displayName, _ := body["displayname"].(string)
	if displayName == "" {
		displayName = lp
	}
	pw := ""
	if password != nil {
		pw = *password
	}
	u := s.addUserLocked(FakeUser{Localpart: lp, DisplayName: displayName, Admin: admin, UserType: userType}, pw)
	s.counts.Registrations++
	if threepids != nil && !s.setThreepids(w, u, *threepids) {
		return
	}
	if externalIDs != nil {
		// on_PUT's create branch calls record_user_external_id once per ID,
		// each its own transaction, after register_user: on a conflict the
		// account exists (without a password unless one was sent) and keeps
		// the IDs recorded before it, and the avatar is not set.
		for _, e := range *externalIDs {
			ids, ok := s.recordExternalIDLocked(u, u.externalIDs, e)
			if !ok {
				writeExternalIDInUse(w)
				return
			}
			u.externalIDs = ids
		}
	}
	if av, ok := body["avatar_url"].(string); ok {
		u.avatarURL = av
	}
	writeJSON(w, http.StatusCreated, s.userJSON(u))
}

// setThreepids replaces u's threepids as add_threepid would: medium checked,
// email addresses lowercased.
func (s *Server) setThreepids(w http.ResponseWriter, u *user, tps []matrix.ThreePID) bool {
	out := make([]matrix.ThreePID, 0, len(tps))
	for _, t := range tps {
		if t.Medium != "email" && t.Medium != "msisdn" {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "'"+t.Medium+"' is not a valid value for 'medium'")
			return false
		}
		if t.Medium == "email" {
			t.Address = strings.ToLower(t.Address)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	u.threepids = out
	return true
}

// recordExternalIDLocked is _record_user_external_id_txn
// (synapse/storage/databases/main/registration.py) for user u, whose
// external IDs in the transaction so far are ids. The table is UNIQUE on
// (auth_provider, external_id) only, so a user may hold several IDs at one
// provider. The row is upserted with ON CONFLICT DO NOTHING; when it was
// already there (for u or anyone else), Synapse selects one external ID of
// u at that provider and raises ExternalIDReuseException unless it is the
// one being recorded. So:
//   - an ID another account holds is a conflict;
//   - an ID u holds already is recorded once, without error, unless u also
//     holds another ID at that provider, in which case the outcome depends
//     on which row the unordered SELECT returns first; the fake takes the
//     first recorded, as a fresh table returns it.
//
// It returns u's IDs with e recorded, or ok false on a conflict.
func (s *Server) recordExternalIDLocked(u *user, ids []matrix.ExternalID, e matrix.ExternalID) (_ []matrix.ExternalID, ok bool) {
	taken := slices.Contains(ids, e)
	for _, other := range s.users {
		if other != u && slices.Contains(other.externalIDs, e) {
			taken = true
		}
	}
	if !taken {
		return append(slices.Clip(ids), e), true
	}
	for _, mine := range ids {
		if mine.AuthProvider == e.AuthProvider {
			return ids, mine.ExternalID == e.ExternalID
		}
	}
	return ids, false
}

// writeExternalIDInUse is on_PUT's answer to ExternalIDReuseException:
// SynapseError(HTTPStatus.CONFLICT, "External id is already in use."),
// whose errcode defaults to M_UNKNOWN (synapse/rest/admin/users.py).
func writeExternalIDInUse(w http.ResponseWriter) {
	writeError(w, http.StatusConflict, matrix.ErrcodeUnknown, "External id is already in use.")
}

// pairListParam reads an optional list of objects with two string fields, as
// Synapse's admin PUT takes threepids (medium, address) and external_ids
// (auth_provider, external_id): nil when absent, 400 when malformed, with
// Synapse's messages.
func pairListParam[T any](w http.ResponseWriter, body map[string]any, key, k1, k2 string, build func(v1, v2 string) T) (*[]T, bool) {
	v, present := body[key]
	if !present || v == nil {
		return nil, true
	}
	list, ok := v.([]any)
	if !ok {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeBadJSON, key+" must be a list")
		return nil, false
	}
	out := []T{}
	for _, item := range list {
		m, _ := item.(map[string]any)
		// assert_params_in_dict (synapse/http/servlet.py) names the absent
		// keys, as Python's repr of a list of them.
		var absent []string
		for _, k := range []string{k1, k2} {
			if _, ok := m[k]; !ok {
				absent = append(absent, "'"+k+"'")
			}
		}
		if len(absent) > 0 {
			writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "Missing params: ["+strings.Join(absent, ", ")+"]")
			return nil, false
		}
		v1, ok1 := m[k1].(string)
		v2, ok2 := m[k2].(string)
		if !ok1 || !ok2 {
			// Synapse checks only that the keys are there and would store a
			// number as its text; nothing here ever sends one, so the fake
			// refuses it instead of imitating that.
			writeError(w, http.StatusBadRequest, matrix.ErrcodeBadJSON, fmt.Sprintf("%s and %s must be strings", k1, k2))
			return nil, false
		}
		out = append(out, build(v1, v2))
	}
	return &out, true
}

func threepidsParam(w http.ResponseWriter, body map[string]any) (*[]matrix.ThreePID, bool) {
	return pairListParam(w, body, "threepids", "medium", "address", func(m, a string) matrix.ThreePID {
		return matrix.ThreePID{Medium: m, Address: a}
	})
}

func externalIDsParam(w http.ResponseWriter, body map[string]any) (*[]matrix.ExternalID, bool) {
	return pairListParam(w, body, "external_ids", "auth_provider", "external_id", func(p, id string) matrix.ExternalID {
		return matrix.ExternalID{AuthProvider: p, ExternalID: id}
	})
}

// boolParam reads an optional boolean (false when absent), answering 400 when
// it has another type.
func boolParam(w http.ResponseWriter, body map[string]any, name, errcode, msg string) (bool, bool) {
	v, present := body[name]
	if !present {
		return false, true
	}
	b, ok := v.(bool)
	if !ok {
		writeError(w, http.StatusBadRequest, errcode, msg)
		return false, false
	}
	return b, true
}

// deactivateLocked is DeactivateAccountHandler.deactivate_account
// (synapse/handlers/deactivate_account.py): threepids, devices and the
// password hash go; erase also blanks the profile. The user parter leaves every room (in the background on Synapse; at once
// here). External IDs stay: deactivation does not touch user_external_ids.
func (s *Server) deactivateLocked(u *user, erase bool) {
	u.deactivated = true
	u.threepids = nil
	u.hash, u.salt = nil, nil
	s.deleteDevicesLocked(u, "")
	for _, rm := range s.rooms {
		delete(rm.members, s.UserID(u.localpart))
	}
	if erase {
		u.erased = true
		u.displayName, u.avatarURL = "", ""
	}
}

// deactivate is DeactivateAccountRestServlet.on_POST.
func (s *Server) deactivate(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	lp, ok := s.targetUser(w, r, "Can only deactivate local users")
	if !ok {
		return
	}
	u, ok := s.users[lp]
	if !ok {
		writeError(w, http.StatusNotFound, matrix.ErrcodeNotFound, "User not found")
		return
	}
	body, ok := readObject(w, r, true)
	if !ok {
		return
	}
	erase, ok := boolParam(w, body, "erase", matrix.ErrcodeBadJSON, "Param 'erase' must be a boolean, if given")
	if !ok {
		return
	}
	s.deactivateLocked(u, erase)
	writeJSON(w, http.StatusOK, map[string]string{"id_server_unbind_result": "success"})
}

// join is JoinRoomAliasServlet.on_POST (synapse/rest/admin/rooms.py), for
// rooms created with AddRoom; every such room is public.
func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	body, ok := readObject(w, r, false)
	if !ok {
		return
	}
	target, _ := body["user_id"].(string)
	if target == "" {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "Missing params: ['user_id']")
		return
	}
	lp, local := s.localUser(target)
	if !local {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, "This endpoint can only be used with local users")
		return
	}
	if _, ok := s.users[lp]; !ok {
		writeError(w, http.StatusNotFound, matrix.ErrcodeNotFound, "User not found")
		return
	}
	ident := r.PathValue("room")
	var roomID string
	switch {
	case strings.HasPrefix(ident, "!") && strings.Contains(ident, ":"):
		roomID = ident
	case strings.HasPrefix(ident, "#") && strings.Contains(ident, ":"):
		id, ok := s.aliases[ident]
		if !ok {
			// synapse/handlers/directory.py
			writeError(w, http.StatusNotFound, matrix.ErrcodeNotFound, "Room alias "+ident+" not found")
			return
		}
		roomID = id
	default:
		writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, ident+" was not legal room ID or room alias")
		return
	}
	rm, ok := s.rooms[roomID]
	if !ok {
		// NoKnownServersError (synapse/handlers/room_member.py): the server
		// is not in the room and was told no server to join it through.
		writeError(w, http.StatusNotFound, matrix.ErrcodeUnknown, "No known servers")
		return
	}
	rm.members[target] = true
	writeJSON(w, http.StatusOK, map[string]string{"room_id": roomID})
}

// adminUsernameAvailable is UsernameAvailableRestServlet
// (synapse/rest/admin/username_available.py): check_username, answered
// whether or not public registration is on.
func (s *Server) adminUsernameAvailable(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	s.usernameAvailableSynapseLocked(w, r)
}

// joinedRooms is UserJoinedRoomsRestServlet (synapse/rest/admin/users.py):
// the store's rooms for the user ID, whether or not the user exists (an
// unknown user has none), and no check that the ID is local.
func (s *Server) joinedRooms(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	target := r.PathValue("userID")
	rooms := []string{}
	for id, rm := range s.rooms {
		if rm.members[target] {
			rooms = append(rooms, id)
		}
	}
	slices.Sort(rooms)
	writeJSON(w, http.StatusOK, map[string]any{"joined_rooms": rooms, "total": len(rooms)})
}

// directoryRoom is ClientDirectoryServer.on_GET (synapse/rest/client/directory.py,
// synapse/handlers/directory.py get_association): no authentication; 400 for
// a malformed alias, 404 M_NOT_FOUND for an unknown one.
func (s *Server) directoryRoom(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	alias := r.PathValue("alias")
	if !strings.HasPrefix(alias, "#") || !strings.Contains(alias, ":") {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Room alias invalid")
		return
	}
	id, ok := s.aliases[alias]
	if !ok {
		writeError(w, http.StatusNotFound, matrix.ErrcodeNotFound, "Room alias "+alias+" not found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"room_id": id, "servers": []string{s.o.ServerName}})
}
