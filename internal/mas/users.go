package mas

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// User is a MAS user as the admin API describes it
// (crates/handlers/src/admin/model.rs, User).
type User struct {
	ID            string    // a ULID; the key of every other call
	Username      string    // the localpart of the Matrix ID
	CreatedAt     time.Time //
	LockedAt      time.Time // zero if not locked
	DeactivatedAt time.Time // zero if not deactivated
	Admin         bool      // may request admin access (can_request_admin)
	LegacyGuest   bool      // was a guest before the migration to MAS
}

// Locked reports whether the user is locked (deactivated users are too,
// once MAS's deactivation job has run).
func (u User) Locked() bool { return !u.LockedAt.IsZero() }

// Deactivated reports whether the user is deactivated.
func (u User) Deactivated() bool { return !u.DeactivatedAt.IsZero() }

type userAttributes struct {
	Username      string     `json:"username"`
	CreatedAt     time.Time  `json:"created_at"`
	LockedAt      *time.Time `json:"locked_at"`
	DeactivatedAt *time.Time `json:"deactivated_at"`
	Admin         bool       `json:"admin"`
	LegacyGuest   bool       `json:"legacy_guest"`
}

func (a userAttributes) user(id string) User {
	u := User{ID: id, Username: a.Username, CreatedAt: a.CreatedAt, Admin: a.Admin, LegacyGuest: a.LegacyGuest}
	if a.LockedAt != nil {
		u.LockedAt = *a.LockedAt
	}
	if a.DeactivatedAt != nil {
		u.DeactivatedAt = *a.DeactivatedAt
	}
	return u
}

// resource is one JSON:API resource (crates/handlers/src/admin/response.rs,
// SingleResource).
type resource[A any] struct {
	Type       string `json:"type"`
	ID         string `json:"id"`
	Attributes A      `json:"attributes"`
	Meta       struct {
		Page struct {
			Cursor string `json:"cursor"`
		} `json:"page"`
	} `json:"meta"`
}

type single[A any] struct {
	Data resource[A] `json:"data"`
}

type page[A any] struct {
	Data  []resource[A] `json:"data"`
	Links struct {
		Next string `json:"next"`
	} `json:"links"`
}

// nextCursor is the cursor after the page, or "" if it is the last one. MAS
// builds links.next from the last item's cursor, and sends it only when there
// is a next page (response.rs, PaginatedResponse::for_page). A cursor equal to
// the one just used would loop forever: it ends the listing.
func (p *page[A]) nextCursor(after string) string {
	if p.Links.Next == "" || len(p.Data) == 0 {
		return ""
	}
	last := p.Data[len(p.Data)-1]
	cur := last.Meta.Page.Cursor
	if cur == "" {
		cur = last.ID
	}
	if cur == after {
		return ""
	}
	return cur
}

// DefaultPageSize is the page size list calls use when given none. MAS's own
// default is 10 (crates/handlers/src/admin/params.rs).
const DefaultPageSize = 100

func pageQuery(after string, limit int) url.Values {
	if limit <= 0 {
		limit = DefaultPageSize
	}
	q := url.Values{"page[first]": {strconv.Itoa(limit)}, "count": {"false"}}
	if after != "" {
		q.Set("page[after]", after)
	}
	return q
}

// mapError gives MAS's answer its meaning on this endpoint: which sentinel a
// status (and, where one status means two things, a title) stands for.
func mapError(err error, m func(e *Error) error) error {
	var e *Error
	if errors.As(err, &e) && e.sentinel == nil {
		if e.Status == http.StatusNotFound && e.isMAS() {
			e.sentinel = ErrNotFound
		}
		if m != nil {
			if s := m(e); s != nil {
				e.sentinel = s
			}
		}
	}
	return err
}

// UserByUsername looks a user up by username (GET users/by-username/{username};
// crates/handlers/src/admin/v1/users/by_username.rs). MAS compares usernames
// case-insensitively, preferring an exact match. ErrNotFound if none.
func (c *Client) UserByUsername(ctx context.Context, username string) (User, error) {
	var res single[userAttributes]
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/users/by-username/" + url.PathEscape(username), out: &res})
	if err != nil {
		return User{}, fmt.Errorf("look up MAS user %s: %w", username, mapError(err, nil))
	}
	return res.Data.Attributes.user(res.Data.ID), nil
}

// CreateOptions are the optional fields of a new user.
type CreateOptions struct {
	DisplayName string // set on the homeserver; "" for none
	AvatarURL   string // an mxc:// URI; "" for none
}

// CreateUser creates a user (POST users; crates/handlers/src/admin/v1/users/
// add.rs). MAS first checks that it has no such user (ErrUserExists), then
// the username's syntax (ErrInvalidUsername), then asks the homeserver
// (ErrUsernameReserved): the homeserver check is never skipped. The user has
// no password until SetPassword.
func (c *Client) CreateUser(ctx context.Context, username string, opts CreateOptions) (User, error) {
	body := map[string]any{"username": username, "skip_homeserver_check": false}
	if opts.DisplayName != "" {
		body["displayname"] = opts.DisplayName
	}
	if opts.AvatarURL != "" {
		body["avatar_url"] = opts.AvatarURL
	}
	var res single[userAttributes]
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/users", in: body, out: &res})
	if err != nil {
		return User{}, fmt.Errorf("create MAS user %s: %w", username, mapError(err, func(e *Error) error {
			switch {
			case e.Status == http.StatusConflict && e.hasTitle("Username is reserved"):
				return ErrUsernameReserved
			case e.Status == http.StatusConflict:
				return ErrUserExists
			case e.Status == http.StatusBadRequest && e.hasTitle("Username is not valid"):
				return ErrInvalidUsername
			}
			return nil
		}))
	}
	return res.Data.Attributes.user(res.Data.ID), nil
}

// SetPassword sets a user's password (POST users/{id}/set-password → 204;
// crates/handlers/src/admin/v1/users/set_password.rs). skipCheck skips MAS's
// complexity check. ErrWeakPassword, ErrPasswordsDisabled, ErrNotFound.
func (c *Client) SetPassword(ctx context.Context, id, password string, skipCheck bool) error {
	body := map[string]any{"password": password, "skip_password_check": skipCheck}
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/users/" + url.PathEscape(id) + "/set-password", in: body})
	if err != nil {
		return fmt.Errorf("set the password of MAS user %s: %w", id, mapError(err, func(e *Error) error {
			switch e.Status {
			case http.StatusBadRequest:
				if e.hasTitle("Password is too weak") {
					return ErrWeakPassword
				}
			case http.StatusForbidden:
				return ErrPasswordsDisabled
			}
			return nil
		}))
	}
	return nil
}

// SetAdmin sets whether the user may request admin access
// (POST users/{id}/set-admin; .../users/set_admin.rs). Existing sessions keep
// what they had.
func (c *Client) SetAdmin(ctx context.Context, id string, admin bool) (User, error) {
	return c.userAction(ctx, "set admin on", id, "set-admin", map[string]any{"admin": admin})
}

// Deactivate deactivates the user and ends their sessions
// (POST users/{id}/deactivate; .../users/deactivate.rs). Unless skipErase,
// MAS asks the homeserver to GDPR-erase the account as well. Deactivating a
// deactivated user is a no-op that succeeds.
func (c *Client) Deactivate(ctx context.Context, id string, skipErase bool) (User, error) {
	return c.userAction(ctx, "deactivate", id, "deactivate", map[string]any{"skip_erase": skipErase})
}

// Reactivate reactivates a deactivated user (POST users/{id}/reactivate;
// .../users/reactivate.rs). It does not unlock a locked user.
func (c *Client) Reactivate(ctx context.Context, id string) (User, error) {
	return c.userAction(ctx, "reactivate", id, "reactivate", nil)
}

func (c *Client) userAction(ctx context.Context, op, id, action string, body any) (User, error) {
	var res single[userAttributes]
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/users/" + url.PathEscape(id) + "/" + action, in: body, out: &res})
	if err != nil {
		return User{}, fmt.Errorf("%s MAS user %s: %w", op, id, mapError(err, nil))
	}
	return res.Data.Attributes.user(res.Data.ID), nil
}

// ListUsers returns one page of users in ID order (GET users with page[first]
// and page[after]; .../users/list.rs) and the cursor of the next page, ""
// after the last. after "" starts at the beginning; limit <= 0 means
// DefaultPageSize.
func (c *Client) ListUsers(ctx context.Context, after string, limit int) (users []User, next string, err error) {
	var res page[userAttributes]
	_, err = c.do(ctx, request{method: http.MethodGet, path: "/users", query: pageQuery(after, limit), out: &res})
	if err != nil {
		return nil, "", fmt.Errorf("list MAS users: %w", mapError(err, nil))
	}
	users = make([]User, 0, len(res.Data))
	for _, r := range res.Data {
		users = append(users, r.Attributes.user(r.ID))
	}
	return users, res.nextCursor(after), nil
}

// EachUser calls fn for every user, page by page, and stops at fn's first
// error. It stops, too, at a cursor it has already followed: a server that
// loops cannot make it run forever.
func (c *Client) EachUser(ctx context.Context, limit int, fn func(User) error) error {
	seen := map[string]bool{}
	after := ""
	for {
		users, next, err := c.ListUsers(ctx, after, limit)
		if err != nil {
			return err
		}
		for _, u := range users {
			if err := fn(u); err != nil {
				return err
			}
		}
		if next == "" || seen[next] {
			return nil
		}
		seen[next] = true
		after = next
	}
}

// SiteConfig is what MAS says about its configuration (GET site-config;
// crates/handlers/src/admin/v1/site_config.rs). It is a plain object, not a
// JSON:API resource.
type SiteConfig struct {
	ServerName                        string `json:"server_name"`
	PasswordLoginEnabled              bool   `json:"password_login_enabled"`
	PasswordRegistrationEnabled       bool   `json:"password_registration_enabled"`
	PasswordRegistrationEmailRequired bool   `json:"password_registration_email_required"`
	PasswordRegistrationTokenRequired bool   `json:"password_registration_token_required"`
	EmailChangeAllowed                bool   `json:"email_change_allowed"`
	DisplaynameChangeAllowed          bool   `json:"displayname_change_allowed"`
	PasswordChangeAllowed             bool   `json:"password_change_allowed"`
	AccountRecoveryAllowed            bool   `json:"account_recovery_allowed"`
	AccountDeactivationAllowed        bool   `json:"account_deactivation_allowed"`
	CaptchaEnabled                    bool   `json:"captcha_enabled"`
	// MinimumPasswordComplexity is a zxcvbn score, 0 to 4, that set-password
	// requires unless told to skip the check.
	MinimumPasswordComplexity int `json:"minimum_password_complexity"`
}

// SiteConfig reads MAS's site configuration. It also proves that the client
// can get an admin token and reach the admin API.
func (c *Client) SiteConfig(ctx context.Context) (SiteConfig, error) {
	var res SiteConfig
	if _, err := c.do(ctx, request{method: http.MethodGet, path: "/site-config", out: &res}); err != nil {
		return SiteConfig{}, fmt.Errorf("read MAS's site config: %w", mapError(err, nil))
	}
	return res, nil
}
