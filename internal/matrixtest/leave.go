package matrixtest

import (
	"net/http"
	"strings"

	"github.com/provision-matrix/provision/internal/matrix"
)

// Leaving rooms as a user, the way an admin does it on Synapse: log in as the
// user through the admin API, leave with that token, log it out. After
// Synapse's synapse/rest/admin/users.py (UserTokenRestServlet) and
// synapse/rest/client/room.py (RoomMembershipRestServlet, whose leave goes
// through synapse/handlers/room_member.py and the event auth rules: a user
// who is not in the room cannot leave it, 403 M_FORBIDDEN).

func (s *Server) leaveRoutes(m *http.ServeMux) {
	m.HandleFunc("POST /_synapse/admin/v1/users/{userID}/login", s.loginAs)
	for _, v := range []string{"r0", "v3"} {
		m.HandleFunc("POST /_matrix/client/"+v+"/rooms/{roomID}/leave", s.leave)
	}
}

// loginAs is UserTokenRestServlet.on_POST: admin only; 400 for a remote user
// or the admin's own ID, 404 for an unknown user; the token puppets the user
// and has no device of its own (device_id None).
func (s *Server) loginAs(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	admin, _, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	if s.o.MAS {
		// Not registered when Synapse delegates to MAS.
		writeError(w, http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
		return
	}
	target := r.PathValue("userID")
	lp, local := s.localUser(target)
	if !local {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, "Only local users can be logged in as")
		return
	}
	u, ok := s.users[lp]
	if !ok {
		writeError(w, http.StatusNotFound, matrix.ErrcodeNotFound, "User not found")
		return
	}
	if _, ok := readObject(w, r, true); !ok {
		return
	}
	if u == admin {
		writeError(w, http.StatusBadRequest, matrix.ErrcodeUnknown, "Cannot use admin API to login as self")
		return
	}
	tok := "syt_" + randomHex(16)
	s.tokens[tok] = session{localpart: u.localpart, device: "puppet-" + randomLetters(10)}
	writeJSON(w, http.StatusOK, map[string]string{"access_token": tok})
}

// leave is RoomMembershipRestServlet with membership_action "leave": the
// token's user leaves; 404 "Not a known room" for a room the server is not
// in, 403 M_FORBIDDEN for a user who is not a member.
func (s *Server) leave(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, _, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if _, ok := readObject(w, r, true); !ok {
		return
	}
	roomID := r.PathValue("roomID")
	rm, ok := s.rooms[roomID]
	if !ok || !strings.HasPrefix(roomID, "!") {
		writeError(w, http.StatusNotFound, matrix.ErrcodeNotFound, "Not a known room")
		return
	}
	id := s.UserID(u.localpart)
	if !rm.members[id] {
		writeError(w, http.StatusForbidden, matrix.ErrcodeForbidden, "User "+id+" not in room "+roomID)
		return
	}
	delete(rm.members, id)
	writeJSON(w, http.StatusOK, map[string]any{})
}

// Tokens is the number of live access tokens of an account (its devices' and
// any admin login-as tokens not logged out).
func (s *Server) Tokens(localpart string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sess := range s.tokens {
		if sess.localpart == localpart {
			n++
		}
	}
	return n
}

// JoinUser puts a user in a room created with AddRoom, as if they had joined
// it themselves.
func (s *Server) JoinUser(roomID, userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rm, ok := s.rooms[roomID]; ok {
		rm.members[userID] = true
	}
}
