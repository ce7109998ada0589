package matrix

import (
	"github.com/provision-matrix/provision/internal/password"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// deviceName labels the sessions this tool opens (e.g. to check a password),
// so that an operator who finds one knows where it came from.
const deviceName = "provision"

// Session is a logged-in session.
type Session struct {
	AccessToken string
	UserID      string // the full user ID, as the server spells it
	DeviceID    string
}

// Login opens a session with m.login.password (identifier m.id.user; user is
// a localpart or a full user ID) and returns its access token. Close it with
// Logout. A wrong password is 403 M_FORBIDDEN; a deactivated account
// 403 M_USER_DEACTIVATED on Synapse.
func (c *Client) Login(ctx context.Context, user, password string) (string, error) {
	s, err := c.LoginSession(ctx, user, password)
	return s.AccessToken, err
}

// LoginSession is Login returning the whole session, including the user ID the
// server resolved a localpart to.
func (c *Client) LoginSession(ctx context.Context, user, password string) (Session, error) {
	body := map[string]any{
		"type":                        "m.login.password",
		"identifier":                  map[string]string{"type": "m.id.user", "user": user},
		"password":                    password,
		"initial_device_display_name": deviceName,
	}
	var res struct {
		AccessToken string `json:"access_token"`
		UserID      string `json:"user_id"`
		DeviceID    string `json:"device_id"`
	}
	if _, err := c.do(ctx, request{method: http.MethodPost, path: "/_matrix/client/v3/login", in: body, out: &res}); err != nil {
		return Session{}, fmt.Errorf("log in as %s: %w", user, err)
	}
	if res.AccessToken == "" {
		return Session{}, fmt.Errorf("log in as %s: the server answered without an access token", user)
	}
	return Session{AccessToken: res.AccessToken, UserID: res.UserID, DeviceID: res.DeviceID}, nil
}

// Logout ends the session of accessToken (and deletes its device).
func (c *Client) Logout(ctx context.Context, accessToken string) error {
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/_matrix/client/v3/logout", token: []byte(accessToken), in: struct{}{}})
	if err != nil {
		return fmt.Errorf("log out: %w", err)
	}
	return nil
}

// Availability is the answer of a username availability check.
type Availability int

const (
	// Unknown: the server would not say (Synapse with public registration
	// disabled, the usual case on servers provisioned with the shared secret).
	Unknown Availability = iota
	// Available: no account has this localpart (compared case-insensitively).
	Available
	// Taken: an account has it.
	Taken
)

func (a Availability) String() string {
	switch a {
	case Available:
		return "available"
	case Taken:
		return "taken"
	}
	return "unknown"
}

// UsernameAvailable asks GET /_matrix/client/v3/register/available. Synapse
// answers 403 M_FORBIDDEN whenever public registration is disabled: that is
// Unknown, not an error and not "taken". A localpart the server rejects is an
// error (M_INVALID_USERNAME).
func (c *Client) UsernameAvailable(ctx context.Context, localpart string) (Availability, error) {
	a, err := c.available(ctx, "/_matrix/client/v3/register/available", nil, localpart)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status == http.StatusForbidden && e.Errcode == ErrcodeForbidden {
			return Unknown, nil
		}
		return Unknown, fmt.Errorf("check whether %s is available: %w", localpart, err)
	}
	return a, nil
}

// available runs a /register/available-style check: 200 {"available": true},
// or 400 M_USER_IN_USE.
func (c *Client) available(ctx context.Context, path string, token []byte, localpart string) (Availability, error) {
	var res struct {
		Available bool `json:"available"`
	}
	_, err := c.do(ctx, request{method: http.MethodGet, path: path, token: token,
		query: url.Values{"username": {localpart}}, out: &res})
	switch {
	case err == nil && res.Available:
		return Available, nil
	case err == nil:
		// Synapse and Dendrite never answer 200 {"available": false}; a
		// server that does means "taken".
		return Taken, nil
	case IsUserInUse(err):
		return Taken, nil
	}
	return Unknown, err
}

// PasswordPolicy is the policy a server publishes (Synapse's
// password_config.policy): what a password must satisfy at the user's next
// password change. It is provision's one policy type.
type PasswordPolicy = password.Policy

// PasswordPolicy reads GET /_matrix/client/v3/password_policy. The bool is
// false when the server has no such endpoint (Dendrite: 404 M_UNRECOGNIZED);
// Synapse with no policy answers {}, which is (zero, true, nil).
func (c *Client) PasswordPolicy(ctx context.Context) (PasswordPolicy, bool, error) {
	var res map[string]json.RawMessage
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/_matrix/client/v3/password_policy", out: &res})
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status == http.StatusNotFound {
			return PasswordPolicy{}, false, nil
		}
		return PasswordPolicy{}, false, fmt.Errorf("read the password policy: %w", err)
	}
	// Synapse copies the config's values as written: a YAML "1" where a
	// boolean belongs arrives as a number, so decode leniently.
	p := PasswordPolicy{
		MinLength:        int(flexInt(res["m.minimum_length"])),
		RequireDigit:     bool(flexBoolOf(res["m.require_digit"])),
		RequireSymbol:    bool(flexBoolOf(res["m.require_symbol"])),
		RequireLowercase: bool(flexBoolOf(res["m.require_lowercase"])),
		RequireUppercase: bool(flexBoolOf(res["m.require_uppercase"])),
	}
	return p, true, nil
}

// Versions reads GET /_matrix/client/versions, the unauthenticated "is there a
// Matrix homeserver here" check. Anything else than a list of versions is
// ErrNotHomeserver.
func (c *Client) Versions(ctx context.Context) ([]string, error) {
	var res struct {
		Versions []string `json:"versions"`
	}
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/_matrix/client/versions", out: &res})
	switch {
	case err == nil && len(res.Versions) > 0:
		return res.Versions, nil
	case err == nil, Status(err) == http.StatusNotFound, errors.Is(err, errMalformed):
		cause := err
		if cause == nil {
			cause = errors.New("the answer lists no versions")
		}
		return nil, &hinted{op: "check the homeserver " + c.base, sentinel: ErrNotHomeserver, cause: cause,
			hint: "give the client-server API's base URL (where /_matrix/client/versions answers), e.g. https://matrix.example.org"}
	}
	return nil, fmt.Errorf("check the homeserver %s: %w", c.base, err)
}

// ServerName asks the server for its server_name, the part after the colon in
// its user IDs, which the URL's host need not be. It reads the federation key
// document (GET /_matrix/key/v2/server), the one unauthenticated place that
// states it; a server with federation disabled (or a proxy that does not
// forward the path) answers 404, and the caller must learn the name from a
// registration's user ID or from its configuration instead.
func (c *Client) ServerName(ctx context.Context) (string, error) {
	var res struct {
		ServerName string `json:"server_name"`
	}
	if _, err := c.do(ctx, request{method: http.MethodGet, path: "/_matrix/key/v2/server", out: &res}); err != nil {
		return "", fmt.Errorf("read the server name: %w", err)
	}
	if res.ServerName == "" {
		return "", fmt.Errorf("read the server name: the key document names no server")
	}
	return res.ServerName, nil
}
