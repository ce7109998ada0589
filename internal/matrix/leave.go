package matrix

import (
	"context"
	"fmt"
	"net/http"
)

// Making a user leave a room. Synapse's admin API can join a user to a room
// (Admin.Join) but has no "make this user leave" call: an admin acts as the
// user instead. The steps, read from Synapse's synapse/rest/admin/users.py
// (UserTokenRestServlet) and synapse/rest/client/room.py
// (RoomMembershipRestServlet):
//
//  1. POST /_synapse/admin/v1/users/<user_id>/login {} → 200 {"access_token"}:
//     a token that acts as the user (a "puppet" token: it belongs to the admin
//     and puppets the user, no device). 400 for a remote user or the admin's
//     own ID ("Cannot use admin API to login as self"), 404 "User not found".
//  2. POST /_matrix/client/v3/rooms/<room_id>/leave {} with that token → 200 {}.
//  3. POST /_matrix/client/v3/logout with that token, so that no session is
//     left behind.
//
// With MAS (MSC3861) the login-as-user servlet is not registered: 404
// M_UNRECOGNIZED, which maps to ErrNoAdminAPI like the rest of the admin API.

// LoginAs returns an access token that acts as userID (step 1 above). The
// caller must log it out (Client.Logout) when done. The token appears in no
// error.
func (a *Admin) LoginAs(ctx context.Context, userID string) (string, error) {
	op := "log in as " + userID
	if err := checkID(userID, '@'); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	var res struct {
		AccessToken string `json:"access_token"`
	}
	if _, err := a.do(ctx, op, request{method: http.MethodPost, path: userPath(adminV1+"/users/", userID) + "/login",
		in: struct{}{}, out: &res}); err != nil {
		return "", err
	}
	if res.AccessToken == "" {
		return "", fmt.Errorf("%s: the server answered without an access_token", op)
	}
	return res.AccessToken, nil
}

// Leave makes the user whose access token is given leave roomID (a room ID,
// !…; an alias must be resolved first) (step 2 above).
func (c *Client) Leave(ctx context.Context, accessToken, roomID string) error {
	op := "leave " + roomID
	if roomID == "" || roomID[0] != '!' {
		return fmt.Errorf("%s: %w: leaving needs the room's ID (!…)", op, ErrInvalidRequest)
	}
	if _, err := c.do(ctx, request{method: http.MethodPost, path: userPath("/_matrix/client/v3/rooms/", roomID) + "/leave",
		token: []byte(accessToken), in: struct{}{}}); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// LeaveAs makes userID leave each of rooms (room IDs) by logging in as the
// user through the admin API, leaving, and logging that token out again,
// also when a leave fails. It returns the first error; rooms before it were
// left. A caller that retries requests one by one uses the three steps
// itself.
func (a *Admin) LeaveAs(ctx context.Context, userID string, rooms []string) error {
	tok, err := a.LoginAs(ctx, userID)
	if err != nil {
		return err
	}
	var first error
	for _, room := range rooms {
		if err := a.c.Leave(ctx, tok, room); err != nil {
			first = fmt.Errorf("%s: %w", userID, err)
			break
		}
	}
	if err := a.c.Logout(context.WithoutCancel(ctx), tok); err != nil && first == nil {
		first = err
	}
	return first
}

// LeaveWith is Client.Leave on the admin's homeserver with a LoginAs token.
func (a *Admin) LeaveWith(ctx context.Context, token, roomID string) error {
	return a.c.Leave(ctx, token, roomID)
}

// LogoutToken logs out a LoginAs token (step 3 above).
func (a *Admin) LogoutToken(ctx context.Context, token string) error {
	return a.c.Logout(ctx, token)
}
