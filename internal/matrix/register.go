package matrix

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strings"
	"time"
)

const registerPath = "/_synapse/admin/v1/register"

// Registration is one account to create with the shared secret.
type Registration struct {
	Localpart   string
	Password    string
	DisplayName string // "" lets the server default it (to the localpart)
	UserType    string // "" for a normal user; Synapse only ("bot", "support")
	Admin       bool
}

// Registered is a created account.
type Registered struct {
	UserID string
	// DeviceID is the device of a session that is still open on the new
	// account: set only when the server opened one despite inhibit_login
	// (Dendrite does) and logging it out failed. See LogoutErr.
	DeviceID string
	// LogoutErr is why that stray session could not be closed. The account
	// was created all the same: this is something to report, not a failed
	// registration.
	LogoutErr error
}

// logoutTimeout bounds the clean-up logout, which runs even when the caller's
// context is cancelled right after the registration: an unused live access
// token is worth the extra second.
const logoutTimeout = 15 * time.Second

// RegisterSharedSecret creates an account with the registration shared secret
// (POST /_synapse/admin/v1/register). Every attempt fetches a fresh nonce: a
// request body can never be replayed, since Synapse deletes a nonce on its
// first use. An "unknown nonce" answer (Synapse after a restart or 60 s;
// Dendrite after 5 min) is retried once, with a new nonce, inside this call.
//
// It sends inhibit_login; if the server opens a session anyway (Dendrite),
// the session is logged out before returning.
//
// The error names the localpart, never the password or the secret. Classify
// and MayHaveLanded apply to the registration POST; a failure to get a nonce
// never "may have landed".
func (c *Client) RegisterSharedSecret(ctx context.Context, secret []byte, r Registration) (Registered, error) {
	op := "register " + r.Localpart
	if strings.ContainsRune(r.Localpart, 0) || strings.ContainsRune(r.Password, 0) || strings.ContainsRune(r.UserType, 0) {
		// NUL separates the MAC's fields: the server would refuse (Synapse)
		// or answer 500 (Dendrite).
		if strings.ContainsRune(r.Localpart, 0) {
			op = fmt.Sprintf("register %q", r.Localpart) // not a raw NUL on the terminal
		}
		return Registered{}, fmt.Errorf("%s: %w: the localpart, password and user type must not contain a NUL character", op, ErrInvalidRequest)
	}
	var firstRejection error
	for {
		nonce, err := c.nonce(ctx)
		if err != nil {
			return Registered{}, registerError(op, "get nonce", err, r)
		}
		var res registerResponse
		_, err = c.do(ctx, request{
			method: http.MethodPost,
			path:   registerPath,
			in:     newRegisterRequest(secret, nonce, r),
			out:    &res,
		})
		if err == nil {
			return c.closeSession(ctx, res), nil
		}
		if !isUnknownNonce(err) {
			return Registered{}, registerError(op, "", err, r)
		}
		if firstRejection != nil {
			return Registered{}, &hinted{op: op, sentinel: ErrNonceRejected, cause: err,
				hint: "nonces live in one server process's memory: if Synapse runs workers, route " +
					registerPath + " (GET and POST) to the main process"}
		}
		firstRejection = err
	}
}

// closeSession logs out the access token that Dendrite returns despite
// inhibit_login, so that no live session is left on the new account.
func (c *Client) closeSession(ctx context.Context, res registerResponse) Registered {
	reg := Registered{UserID: res.UserID}
	if res.AccessToken == "" {
		return reg
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logoutTimeout)
	defer cancel()
	if err := c.Logout(ctx, res.AccessToken); err != nil {
		reg.DeviceID = res.DeviceID
		reg.LogoutErr = fmt.Errorf("close the session the server opened on %s despite inhibit_login (device %s): %w", res.UserID, res.DeviceID, err)
	}
	return reg
}

// ProbeSharedSecret checks that the shared-secret endpoint exists (GET for a
// nonce; nothing is created). A 404 is ErrNoSharedSecretEndpoint. Synapse
// hands out nonces even when no secret is configured: VerifySharedSecret
// finds that out, and checks the secret itself.
func (c *Client) ProbeSharedSecret(ctx context.Context) error {
	if _, err := c.nonce(ctx); err != nil {
		return registerError("probe shared-secret registration", "", err, Registration{})
	}
	return nil
}

// VerifySharedSecret checks, without creating an account, that the server
// accepts secret: it registers the empty localpart with a correct MAC. Both
// Synapse and Dendrite check the MAC before the localpart, so a right secret
// draws 400 M_INVALID_USERNAME, a wrong one 403. It returns nil, or an error
// matching ErrSharedSecretMismatch, ErrSharedSecretDisabled or
// ErrNoSharedSecretEndpoint.
func (c *Client) VerifySharedSecret(ctx context.Context, secret []byte) error {
	const op = "verify the shared secret"
	nonce, err := c.nonce(ctx)
	if err != nil {
		return registerError(op, "get nonce", err, Registration{})
	}
	var res registerResponse
	_, err = c.do(ctx, request{
		method: http.MethodPost,
		path:   registerPath,
		in:     newRegisterRequest(secret, nonce, Registration{}),
		out:    &res,
	})
	switch {
	case err == nil:
		return fmt.Errorf("%s: the server accepted an empty user name (%s): it is not Synapse or Dendrite; do not use it with this tool", op, res.UserID)
	case IsInvalidUsername(err):
		return nil
	}
	return registerError(op, "", err, Registration{})
}

// nonce fetches a fresh registration nonce.
func (c *Client) nonce(ctx context.Context) (string, error) {
	var res struct {
		Nonce string `json:"nonce"`
	}
	if _, err := c.do(ctx, request{method: http.MethodGet, path: registerPath, out: &res}); err != nil {
		return "", err
	}
	if res.Nonce == "" {
		return "", &readOnlyError{&NetError{Method: http.MethodGet, URL: c.base + registerPath, Sent: true,
			Err: errors.New("the answer has no nonce")}}
	}
	return res.Nonce, nil
}

type registerRequest struct {
	Nonce        string `json:"nonce"`
	Username     string `json:"username"`
	Password     string `json:"password"`
	Mac          string `json:"mac"`
	Admin        bool   `json:"admin"`
	UserType     string `json:"user_type,omitempty"`
	DisplayName  string `json:"displayname,omitempty"`
	InhibitLogin bool   `json:"inhibit_login"`
}

type registerResponse struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
	DeviceID    string `json:"device_id"`
}

func newRegisterRequest(secret []byte, nonce string, r Registration) *registerRequest {
	return &registerRequest{
		Nonce:        nonce,
		Username:     r.Localpart,
		Password:     r.Password,
		Mac:          registrationMAC(secret, nonce, r.Localpart, r.Password, r.Admin, r.UserType),
		Admin:        r.Admin,
		UserType:     r.UserType,
		DisplayName:  r.DisplayName,
		InhibitLogin: true,
	}
}

// registrationMAC is the lowercase hex HMAC-SHA1, keyed with the secret, of
// nonce NUL username NUL password NUL ("admin"|"notadmin"), followed by
// NUL user_type only when a user type is sent (PROTOCOL.md; Synapse's
// UserRegisterServlet, Dendrite's IsValidMacLogin).
func registrationMAC(secret []byte, nonce, username, password string, admin bool, userType string) string {
	m := hmac.New(sha1.New, secret)
	writeFields(m, nonce, username, password)
	if admin {
		m.Write([]byte("admin"))
	} else {
		m.Write([]byte("notadmin"))
	}
	if userType != "" {
		m.Write([]byte{0})
		m.Write([]byte(userType))
	}
	return hex.EncodeToString(m.Sum(nil))
}

func writeFields(h hash.Hash, fields ...string) {
	for _, f := range fields {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
}

// isUnknownNonce recognises both dialects' "unknown nonce": Synapse's 400
// M_UNKNOWN "unrecognised nonce" and Dendrite's 500 {"message": "incorrect or
// expired nonce: …"}. Synapse's "nonce must be specified" is M_BAD_JSON and
// does not match.
func isUnknownNonce(err error) bool {
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(strings.ToLower(e.Message), "nonce") {
		return false
	}
	return (e.Status == http.StatusBadRequest && e.Errcode == ErrcodeUnknown) ||
		(e.Status == http.StatusInternalServerError && e.Errcode == "")
}

// registerError names the operation and, for the answers that mean the whole
// run cannot work, matches a sentinel and says what to do.
func registerError(op, step string, err error, r Registration) error {
	if step != "" {
		op += ": " + step
	}
	var e *Error
	if !errors.As(err, &e) {
		return fmt.Errorf("%s: %w", op, err)
	}
	switch {
	case endpointMissing(e):
		return &hinted{op: op, sentinel: ErrNoSharedSecretEndpoint, cause: err,
			hint: "the server has no registration_shared_secret configured (Dendrite), " +
				"or delegates authentication to Matrix Authentication Service (Synapse with MSC3861), " +
				"or a reverse proxy does not forward " + registerPath + "; configure the secret, " +
				"or use a Synapse admin token"}
	case e.Status == http.StatusBadRequest && e.Errcode == ErrcodeUnknown &&
		strings.Contains(strings.ToLower(e.Message), "not enabled"):
		return &hinted{op: op, sentinel: ErrSharedSecretDisabled, cause: err,
			hint: "set registration_shared_secret (or registration_shared_secret_path) in the Synapse config and restart it"}
	case e.Status == http.StatusForbidden:
		hint := "use the server's registration_shared_secret exactly (a secret read from a file loses its surrounding whitespace)"
		if r.UserType != "" {
			hint += "; Dendrite gives this answer for any registration with a user type: it does not support them"
		}
		return &hinted{op: op, sentinel: ErrSharedSecretMismatch, cause: err, hint: hint}
	}
	return fmt.Errorf("%s: %w", op, err)
}
