package mas

import (
	sanitizepkg "github.com/provision-matrix/provision/internal/sanitize"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/provision-matrix/provision/internal/matrix"
)

// Sentinels, to be tested with errors.Is. An error matching one of them also
// unwraps to MAS's *Error, if MAS answered.
var (
	// ErrBadClient: the token endpoint does not accept the client ID and
	// secret (401 invalid_client: unknown client, wrong secret, or a client
	// whose client_auth_method is not client_secret_basic).
	ErrBadClient = errors.New("MAS does not accept the client ID and secret")
	// ErrNotAdminClient: the client authenticated but may not have an admin
	// token (unauthorized_client, or invalid_scope because it is not in
	// policy.data.admin_clients).
	ErrNotAdminClient = errors.New("MAS refuses this client an admin token")
	// ErrUnauthorized: the admin API refused a freshly issued access token.
	ErrUnauthorized = errors.New("the MAS admin API does not accept the access token")
	// ErrNoAdminAPI: nothing answers at /api/admin/v1 (the listener does not
	// serve the adminapi resource, or a proxy does not forward it).
	ErrNoAdminAPI = errors.New("no MAS admin API answers at this URL")
	// ErrNoTokenEndpoint: nothing answers at /oauth2/token (not a MAS URL, or
	// the listener does not serve the oauth resource).
	ErrNoTokenEndpoint = errors.New("no OAuth 2.0 token endpoint answers at this URL")

	// ErrNotFound: the user (or provider) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUserExists: MAS already has a user with this username (compared
	// case-insensitively).
	ErrUserExists = errors.New("user already exists")
	// ErrUsernameReserved: MAS has no such user but the homeserver does (or
	// an application service claims the name).
	ErrUsernameReserved = errors.New("username is reserved by the homeserver")
	// ErrInvalidUsername: MAS does not accept the username (allowed:
	// a-z 0-9 = _ - . / +, not starting with _, 1 to 255 bytes).
	ErrInvalidUsername = errors.New("username is not valid")
	// ErrWeakPassword: MAS's complexity check (zxcvbn score below
	// passwords.minimum_complexity) refused the password.
	ErrWeakPassword = errors.New("password is too weak")
	// ErrPasswordsDisabled: MAS has passwords.enabled: false.
	ErrPasswordsDisabled = errors.New("password authentication is disabled in MAS")
	// ErrEmailInUse: another user has this email address.
	ErrEmailInUse = errors.New("email address is in use by another user")
	// ErrInvalidEmail: MAS does not accept the address's syntax.
	ErrInvalidEmail = errors.New("email address is not valid")
	// ErrLinkConflict: the provider's subject is linked to another user.
	ErrLinkConflict = errors.New("upstream account is linked to another user")
)

// Error is a non-2xx answer from MAS. The admin API answers
// {"errors": [{"title": ...}, ...]}: the error and then its causes, outermost
// first (crates/handlers/src/admin/response.rs); it has no error codes. The
// token endpoint answers {"error": code, "error_description": ...}
// (RFC 6749 §5.2), kept in Code and Titles.
type Error struct {
	Status     int
	Titles     []string      // sanitised; empty when the body was not MAS's (a proxy's page)
	Code       string        // the OAuth error code, token endpoint only ("invalid_client")
	RetryAfter time.Duration // from a Retry-After header, 0 if none

	// sentinel is what the endpoint's answer means, decided by the method
	// that made the request (the same status means different things on
	// different endpoints); nil for none.
	sentinel error
}

// maxTitle bounds each title kept from MAS's answer, maxTitles their number:
// a misconfigured proxy may answer with a whole page.
const (
	maxTitle  = 300
	maxTitles = 8
)

// Error renders e.g. `User already exists (HTTP 409)`.
func (e *Error) Error() string {
	var msg string
	switch {
	case e.Code != "" && len(e.Titles) > 0:
		msg = e.Code + ": " + strings.Join(e.Titles, ": ")
	case e.Code != "":
		msg = e.Code
	default:
		msg = strings.Join(e.Titles, ": ")
	}
	msg = strings.TrimSuffix(msg, ".")
	if msg == "" {
		return fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%s (HTTP %d)", msg, e.Status)
}

// Is matches the sentinel the request's method assigned to this answer.
func (e *Error) Is(target error) bool {
	return e.sentinel != nil && target == e.sentinel
}

// hasTitle reports whether MAS sent a title starting with prefix.
func (e *Error) hasTitle(prefix string) bool {
	for _, t := range e.Titles {
		if strings.HasPrefix(t, prefix) {
			return true
		}
	}
	return false
}

// isMAS reports whether the body was MAS's JSON error shape: a 404 without it
// comes from a router or proxy that has no such endpoint.
func (e *Error) isMAS() bool { return len(e.Titles) > 0 || e.Code != "" }

// hinted names the operation, matches a sentinel, keeps MAS's answer in its
// chain and tells the operator what to do next.
type hinted struct {
	sentinel error
	cause    error
	hint     string
}

func (h *hinted) Error() string {
	s := h.sentinel.Error()
	if h.cause != nil {
		s += " (" + h.cause.Error() + ")"
	}
	if h.hint != "" {
		s += ": " + h.hint
	}
	return s
}

func (h *hinted) Unwrap() []error {
	if h.cause == nil {
		return []error{h.sentinel}
	}
	return []error{h.sentinel, h.cause}
}

// parseError turns a non-2xx answer into an *Error. Fields of the wrong JSON
// type are ignored rather than losing the whole body.
func parseError(status int, h http.Header, body []byte, now time.Time) *Error {
	e := &Error{Status: status, RetryAfter: matrix.ParseRetryAfter(h.Get("Retry-After"), now)}
	var admin struct {
		Errors []struct {
			Title json.RawMessage `json:"title"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &admin) == nil {
		for _, x := range admin.Errors {
			if len(e.Titles) == maxTitles {
				break
			}
			if t := sanitize(jsonString(x.Title), maxTitle); t != "" {
				e.Titles = append(e.Titles, t)
			}
		}
	}
	var oauth struct {
		Error       json.RawMessage `json:"error"`
		Description json.RawMessage `json:"error_description"`
	}
	if len(e.Titles) == 0 && json.Unmarshal(body, &oauth) == nil {
		e.Code = sanitize(jsonString(oauth.Error), 64)
		if d := sanitize(jsonString(oauth.Description), maxTitle); d != "" {
			e.Titles = []string{d}
		}
	}
	return e
}

func jsonString(raw json.RawMessage) string {
	var s string
	if raw == nil || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// sanitize makes a server's text safe for a terminal or a file (internal/sanitize).
func sanitize(s string, max int) string { return sanitizepkg.Line(s, max) }

// Classify says what to do about err, in package matrix's terms, and how long
// MAS (or a proxy in front of it) asked to wait. Errors that did not come
// from this package are classified by matrix.Classify.
func Classify(err error) (matrix.Kind, time.Duration) {
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return matrix.Permanent, 0
	case errors.Is(err, ErrBadClient), errors.Is(err, ErrNotAdminClient), errors.Is(err, ErrUnauthorized),
		errors.Is(err, ErrNoAdminAPI), errors.Is(err, ErrNoTokenEndpoint), errors.Is(err, ErrPasswordsDisabled):
		return matrix.Permanent, 0
	}
	var e *Error
	if errors.As(err, &e) {
		return classifyStatus(e.Status), e.RetryAfter
	}
	return matrix.Classify(err)
}

func classifyStatus(status int) matrix.Kind {
	switch {
	case status == http.StatusTooManyRequests:
		// MAS's admin API has no rate limiter of its own: a 429 comes from a
		// proxy in front of it, and is a rate limit whatever its body.
		return matrix.RateLimited
	case status == http.StatusRequestTimeout:
		return matrix.Retry
	case status == http.StatusNotImplemented, status == http.StatusHTTPVersionNotSupported:
		return matrix.Permanent
	case status >= 500:
		return matrix.Retry
	case status >= 400:
		return matrix.Refused
	default:
		// 3xx: redirects are not followed; the URL needs fixing.
		return matrix.Permanent
	}
}

// MayHaveLanded reports whether the operation that failed with err may
// nevertheless have taken effect in MAS: the request was sent and no definite
// answer came back (a 5xx, a timeout, a cut connection). It is false for 4xx
// refusals, for reads (GET), and for failures before the admin request was
// sent (getting the access token, a refused connection).
func MayHaveLanded(err error) bool {
	if err == nil {
		return false
	}
	var nl *notLanded
	if errors.As(err, &nl) {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status >= 500
	}
	return matrix.MayHaveLanded(err)
}

// notLanded marks a failure that cannot have changed anything in MAS: a read,
// or an admin request that was never sent.
type notLanded struct{ err error }

func (e *notLanded) Error() string { return e.err.Error() }
func (e *notLanded) Unwrap() error { return e.err }

// Status returns the HTTP status of MAS's answer in err's chain, or 0.
func Status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}
