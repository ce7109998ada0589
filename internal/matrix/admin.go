package matrix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Admin is the Synapse admin API (/_synapse/admin), authenticated with a
// server admin's access token. Dendrite has none of it: every method then
// fails with an error matching ErrNoAdminAPI. The token is sent only in the
// Authorization header; it appears in no error.
type Admin struct {
	c     *Client
	token []byte
}

// Admin returns the admin API client for token. The token is copied.
func (c *Client) Admin(token []byte) *Admin {
	return &Admin{c: c, token: bytes.Clone(token)}
}

// ThreePID is a third-party identifier bound to an account.
type ThreePID struct {
	Medium  string `json:"medium"` // "email" or "msisdn"
	Address string `json:"address"`
}

// ExternalID links an account to an SSO provider's identity.
type ExternalID struct {
	AuthProvider string `json:"auth_provider"`
	ExternalID   string `json:"external_id"`
}

// AdminUser is an account as the admin API describes it.
type AdminUser struct {
	UserID       string
	DisplayName  string
	AvatarURL    string
	Admin        bool
	Deactivated  bool
	Locked       bool
	Erased       bool
	ShadowBanned bool
	Guest        bool
	UserType     string
	CreationTS   int64 // as the server sends it (Synapse: milliseconds since the epoch)
	// AppserviceID names the application service (a bridge) that owns the
	// account; "" for an ordinary account. Only GetUser reports it: the list
	// leaves it out.
	AppserviceID string
	ThreePIDs    []ThreePID
	ExternalIDs  []ExternalID
}

// adminUserJSON decodes both the single-user and the list form. Older Synapse
// versions send 0/1 for booleans, hence flexBool.
type adminUserJSON struct {
	Name         string       `json:"name"`
	DisplayName  *string      `json:"displayname"`
	AvatarURL    *string      `json:"avatar_url"`
	Admin        flexBool     `json:"admin"`
	Deactivated  flexBool     `json:"deactivated"`
	Locked       flexBool     `json:"locked"`
	Erased       flexBool     `json:"erased"`
	ShadowBanned flexBool     `json:"shadow_banned"`
	IsGuest      flexBool     `json:"is_guest"`
	UserType     *string      `json:"user_type"`
	CreationTS   flexNumber   `json:"creation_ts"`
	AppserviceID *string      `json:"appservice_id"`
	ThreePIDs    []ThreePID   `json:"threepids"`
	ExternalIDs  []ExternalID `json:"external_ids"`
}

func (u adminUserJSON) user() AdminUser {
	return AdminUser{
		UserID:       u.Name,
		DisplayName:  deref(u.DisplayName),
		AvatarURL:    deref(u.AvatarURL),
		Admin:        bool(u.Admin),
		Deactivated:  bool(u.Deactivated),
		Locked:       bool(u.Locked),
		Erased:       bool(u.Erased),
		ShadowBanned: bool(u.ShadowBanned),
		Guest:        bool(u.IsGuest),
		UserType:     deref(u.UserType),
		CreationTS:   int64(u.CreationTS),
		AppserviceID: deref(u.AppserviceID),
		ThreePIDs:    u.ThreePIDs,
		ExternalIDs:  u.ExternalIDs,
	}
}

const (
	adminUsersV2 = "/_synapse/admin/v2/users"
	adminV1      = "/_synapse/admin/v1"
)

// GetUser reads GET /_synapse/admin/v2/users/<userID>. An absent user is an
// error matching ErrNotFound (404 M_NOT_FOUND).
func (a *Admin) GetUser(ctx context.Context, userID string) (AdminUser, error) {
	op := "get user " + userID
	if err := checkID(userID, '@'); err != nil {
		return AdminUser{}, fmt.Errorf("%s: %w", op, err)
	}
	var res adminUserJSON
	if _, err := a.do(ctx, op, request{method: http.MethodGet, path: userPath(adminUsersV2+"/", userID), out: &res}); err != nil {
		return AdminUser{}, err
	}
	return res.user(), nil
}

// PutUser changes only what is set; a field left nil is not sent.
//
// Hazard: Password on an existing account replaces it and, unless
// LogoutDevices is false, logs out every device (Synapse's default).
type PutUser struct {
	Password      *string
	LogoutDevices *bool
	DisplayName   *string
	AvatarURL     *string
	ThreePIDs     *[]ThreePID   // replaces the whole set
	ExternalIDs   *[]ExternalID // replaces the whole set; 409 if another user has one
	Admin         *bool
	Deactivated   *bool
	Locked        *bool
	UserType      *string // "" clears it (sent as null: Synapse refuses "")
}

func (u PutUser) body() map[string]any {
	m := map[string]any{}
	set := func(k string, v any, ok bool) {
		if ok {
			m[k] = v
		}
	}
	set("password", u.Password, u.Password != nil)
	set("logout_devices", u.LogoutDevices, u.LogoutDevices != nil)
	set("displayname", u.DisplayName, u.DisplayName != nil)
	set("avatar_url", u.AvatarURL, u.AvatarURL != nil)
	set("admin", u.Admin, u.Admin != nil)
	set("deactivated", u.Deactivated, u.Deactivated != nil)
	set("locked", u.Locked, u.Locked != nil)
	if u.ThreePIDs != nil {
		m["threepids"] = nonNil(*u.ThreePIDs)
	}
	if u.ExternalIDs != nil {
		m["external_ids"] = nonNil(*u.ExternalIDs)
	}
	if u.UserType != nil {
		if *u.UserType == "" {
			m["user_type"] = nil
		} else {
			m["user_type"] = *u.UserType
		}
	}
	return m
}

// nonNil makes an empty set travel as [] (clear it), not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// PutUser creates or modifies an account (PUT /_synapse/admin/v2/users/<userID>):
// created is true for 201 (created), false for 200 (modified). Synapse does
// not lowercase: an uppercase localpart is refused with M_INVALID_USERNAME.
func (a *Admin) PutUser(ctx context.Context, userID string, u PutUser) (bool, error) {
	op := "put user " + userID
	if err := checkID(userID, '@'); err != nil {
		return false, fmt.Errorf("%s: %w", op, err)
	}
	status, err := a.do(ctx, op, request{method: http.MethodPut, path: userPath(adminUsersV2+"/", userID), in: u.body()})
	if err != nil {
		return false, err
	}
	return status == http.StatusCreated, nil
}

// ListUsers reads one page of GET /_synapse/admin/v2/users, ordered by name,
// including deactivated and locked accounts (which Synapse leaves out unless
// asked). from is "" for the first page; next is "" after the last one.
// limit <= 0 means the server's default (100).
func (a *Admin) ListUsers(ctx context.Context, from string, limit int) ([]AdminUser, string, error) {
	op := "list users"
	q := url.Values{"deactivated": {"true"}, "locked": {"true"}, "order_by": {"name"}}
	if from != "" {
		q.Set("from", from)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var res struct {
		Users     []adminUserJSON `json:"users"`
		NextToken json.RawMessage `json:"next_token"`
	}
	if _, err := a.do(ctx, op, request{method: http.MethodGet, path: adminUsersV2, query: q, out: &res}); err != nil {
		return nil, "", err
	}
	users := make([]AdminUser, len(res.Users))
	for i, u := range res.Users {
		users[i] = u.user()
	}
	return users, nextToken(res.NextToken), nil
}

// nextToken accepts the string Synapse sends and the number older versions sent.
func nextToken(raw json.RawMessage) string {
	if s := jsonString(raw); s != "" {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// Deactivate deactivates an account (POST /_synapse/admin/v1/deactivate/<userID>);
// erase also erases its profile and messages for future readers. An absent
// user matches ErrNotFound.
func (a *Admin) Deactivate(ctx context.Context, userID string, erase bool) error {
	op := "deactivate " + userID
	if err := checkID(userID, '@'); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	_, err := a.do(ctx, op, request{method: http.MethodPost, path: userPath(adminV1+"/deactivate/", userID),
		in: map[string]bool{"erase": erase}})
	return err
}

// Join makes userID join a room (POST /_synapse/admin/v1/join/<room>) and
// returns the room ID. The admin must be in the room, or able to join it; an
// unknown alias matches ErrNotFound.
func (a *Admin) Join(ctx context.Context, roomIDOrAlias, userID string) (string, error) {
	op := fmt.Sprintf("join %s to %s", userID, roomIDOrAlias)
	if err := checkID(userID, '@'); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	if roomIDOrAlias == "" || (roomIDOrAlias[0] != '!' && roomIDOrAlias[0] != '#') {
		return "", fmt.Errorf("%s: %w: a room is named by its ID (!…) or an alias (#…:server)", op, ErrInvalidRequest)
	}
	var res struct {
		RoomID string `json:"room_id"`
	}
	_, err := a.do(ctx, op, request{method: http.MethodPost, path: userPath(adminV1+"/join/", roomIDOrAlias),
		in: map[string]string{"user_id": userID}, out: &res})
	if err != nil {
		return "", err
	}
	return res.RoomID, nil
}

// JoinedRooms lists the IDs of the rooms userID is joined to
// (GET /_synapse/admin/v1/users/<userID>/joined_rooms). Synapse answers an
// empty list, not 404, for a user it does not know.
func (a *Admin) JoinedRooms(ctx context.Context, userID string) ([]string, error) {
	op := "list the rooms of " + userID
	if err := checkID(userID, '@'); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var res struct {
		JoinedRooms []string `json:"joined_rooms"`
	}
	if _, err := a.do(ctx, op, request{method: http.MethodGet, path: userPath(adminV1+"/users/", userID) + "/joined_rooms", out: &res}); err != nil {
		return nil, err
	}
	return res.JoinedRooms, nil
}

// ResolveAlias returns the room ID an alias points to
// (GET /_matrix/client/v3/directory/room/<alias>), so that a roster's
// aliases can be compared with JoinedRooms' IDs. An unknown alias matches
// ErrNotFound. The directory needs no token; none is sent.
func (a *Admin) ResolveAlias(ctx context.Context, alias string) (string, error) {
	op := "resolve " + alias
	if err := checkID(alias, '#'); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	var res struct {
		RoomID string `json:"room_id"`
	}
	if _, err := a.c.do(ctx, request{method: http.MethodGet, path: userPath("/_matrix/client/v3/directory/room/", alias), out: &res}); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	if res.RoomID == "" {
		return "", fmt.Errorf("%s: %w: no room_id in the answer", op, errMalformed)
	}
	return res.RoomID, nil
}

// UsernameAvailable asks GET /_synapse/admin/v1/username_available, which,
// unlike the client API's check, answers whether or not public registration
// is enabled. It does not lowercase: "Alice" is M_INVALID_USERNAME, an error.
func (a *Admin) UsernameAvailable(ctx context.Context, localpart string) (Availability, error) {
	op := "check whether " + localpart + " is available"
	av, err := a.c.available(ctx, adminV1+"/username_available", a.token, localpart)
	if err != nil {
		return Unknown, adminError(op, err)
	}
	return av, nil
}

// WhoAmI returns the user ID the token belongs to
// (GET /_matrix/client/v3/account/whoami), and from it the server name.
func (a *Admin) WhoAmI(ctx context.Context) (string, error) {
	var res struct {
		UserID string `json:"user_id"`
	}
	_, err := a.c.do(ctx, request{method: http.MethodGet, path: "/_matrix/client/v3/account/whoami", token: a.token, out: &res})
	if err != nil {
		if Status(err) == http.StatusUnauthorized {
			return "", badToken("who am I", err)
		}
		return "", fmt.Errorf("who am I: %w", err)
	}
	return res.UserID, nil
}

// Probe checks that the server has the Synapse admin API and that the token
// is a server admin's, changing nothing. It asks the unauthenticated
// server_version first, so that a Dendrite server is reported as having no
// admin API rather than as rejecting the token.
func (a *Admin) Probe(ctx context.Context) error {
	const op = "probe the Synapse admin API"
	if _, err := a.c.do(ctx, request{method: http.MethodGet, path: adminV1 + "/server_version"}); err != nil {
		return adminError(op, err)
	}
	me, err := a.WhoAmI(ctx)
	if err != nil {
		return err
	}
	// Reading oneself is the cheapest call that needs admin rights.
	_, err = a.GetUser(ctx, me)
	return err
}

// do runs an admin request and maps its failure.
func (a *Admin) do(ctx context.Context, op string, r request) (int, error) {
	r.token = a.token
	status, err := a.c.do(ctx, r)
	if err != nil {
		return status, adminError(op, err)
	}
	return status, nil
}

// adminError tells "no admin API here" apart from "no such user" (404
// M_NOT_FOUND) or "no such room" (404 M_UNKNOWN "No known servers"), and
// marks token problems, which no later request can overcome.
func adminError(op string, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return fmt.Errorf("%s: %w", op, err)
	}
	switch {
	case endpointMissing(e):
		return &hinted{op: op, sentinel: ErrNoAdminAPI, cause: err,
			hint: "admin-token features need Synapse (Dendrite has no such API); if this is Synapse, make the reverse proxy forward /_synapse/admin"}
	case e.Status == http.StatusUnauthorized:
		return badToken(op, err)
	case e.Status == http.StatusForbidden && e.Errcode == ErrcodeForbidden:
		return &hinted{op: op, sentinel: ErrNotAdmin, cause: err,
			hint: "use the access token of a server admin (e.g. one created with register_new_matrix_user --admin)"}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// endpointMissing recognises the answer for a path the server does not serve:
// 404 M_UNRECOGNIZED from Synapse and Dendrite alike (seen on Dendrite
// v0.13.8 for /_synapse/admin/v2/users/…), or a 404 that is not a Matrix
// error at all (a reverse proxy that does not forward the path).
func endpointMissing(e *Error) bool {
	return e.Status == http.StatusNotFound && (e.Errcode == ErrcodeUnrecognized || e.Errcode == "")
}

func badToken(op string, err error) error {
	return &hinted{op: op, sentinel: ErrBadToken, cause: err,
		hint: "the admin token is missing, unknown, expired or logged out: log in as the admin again and use the new token"}
}

// checkID refuses an empty or mis-sigilled ID before it becomes a wrong URL.
func checkID(id string, sigil byte) error {
	if len(id) < 2 || id[0] != sigil || !strings.Contains(id, ":") {
		return fmt.Errorf("%w: %q is not a full ID (%c…:server)", ErrInvalidRequest, id, sigil)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// flexBool accepts true/false, 0/1 and null.
type flexBool bool

func (b *flexBool) UnmarshalJSON(data []byte) error {
	*b = flexBoolOf(data)
	return nil
}

func flexBoolOf(raw json.RawMessage) flexBool {
	var v any
	if raw == nil || json.Unmarshal(raw, &v) != nil {
		return false
	}
	switch v := v.(type) {
	case bool:
		return flexBool(v)
	case float64:
		return v != 0
	}
	return false
}

// flexNumber accepts a number or a numeric string; anything else is 0.
type flexNumber int64

func (n *flexNumber) UnmarshalJSON(data []byte) error {
	*n = flexNumber(flexInt(data))
	return nil
}

func flexInt(raw json.RawMessage) int64 {
	var v json.Number
	if raw == nil {
		return 0
	}
	if json.Unmarshal(raw, &v) != nil {
		s := jsonString(raw)
		if s == "" {
			return 0
		}
		v = json.Number(s)
	}
	if i, err := v.Int64(); err == nil {
		return i
	}
	if f, err := v.Float64(); err == nil {
		return int64(f)
	}
	return 0
}
