package matrix

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Errcodes this package and its callers branch on.
const (
	ErrcodeUnknown         = "M_UNKNOWN"
	ErrcodeForbidden       = "M_FORBIDDEN"
	ErrcodeNotFound        = "M_NOT_FOUND"
	ErrcodeUnrecognized    = "M_UNRECOGNIZED"
	ErrcodeLimitExceeded   = "M_LIMIT_EXCEEDED"
	ErrcodeUserInUse       = "M_USER_IN_USE"
	ErrcodeInvalidUsername = "M_INVALID_USERNAME"
	ErrcodeExclusive       = "M_EXCLUSIVE"
	ErrcodeWeakPassword    = "M_WEAK_PASSWORD"
	ErrcodeMissingToken    = "M_MISSING_TOKEN"
	ErrcodeUnknownToken    = "M_UNKNOWN_TOKEN"
	ErrcodeUserDeactivated = "M_USER_DEACTIVATED"
	ErrcodeBadJSON         = "M_BAD_JSON"
)

// Sentinels, to be tested with errors.Is. Each error that matches one of them
// also unwraps to the server's *Error, if there was one.
var (
	// ErrNotFound: the server answered 404 M_NOT_FOUND (a user, room or alias
	// that does not exist). Never confused with ErrNoAdminAPI: a server without
	// the endpoint answers M_UNRECOGNIZED or a non-Matrix 404.
	ErrNotFound = errors.New("not found")
	// ErrNoAdminAPI: the server has no Synapse admin API (Dendrite, or a reverse
	// proxy that does not forward /_synapse/admin).
	ErrNoAdminAPI = errors.New("the server has no Synapse admin API")
	// ErrNotAdmin: the admin token is valid but its user is not a server admin.
	ErrNotAdmin = errors.New("the admin token's user is not a server admin")
	// ErrBadToken: the server does not accept the access token (missing,
	// unknown, expired or logged out).
	ErrBadToken = errors.New("the server does not accept the access token")
	// ErrNoSharedSecretEndpoint: /_synapse/admin/v1/register answers 404.
	ErrNoSharedSecretEndpoint = errors.New("the server has no shared-secret registration endpoint")
	// ErrSharedSecretDisabled: Synapse serves the endpoint but has no
	// registration_shared_secret configured.
	ErrSharedSecretDisabled = errors.New("shared-secret registration is not enabled on the server")
	// ErrSharedSecretMismatch: the server rejected the registration MAC.
	ErrSharedSecretMismatch = errors.New("the server rejected the shared secret")
	// ErrNonceRejected: the server rejected two fresh nonces in a row.
	ErrNonceRejected = errors.New("the server rejected two fresh registration nonces in a row")
	// ErrNotHomeserver: no Matrix client-server API answers at the URL.
	ErrNotHomeserver = errors.New("no Matrix homeserver answers at this URL")
	// ErrInvalidRequest: the request was refused before it was sent, because
	// the server could not have accepted it (e.g. a NUL byte in a password,
	// which the registration MAC cannot carry).
	ErrInvalidRequest = errors.New("invalid request")
)

// Error is a non-2xx answer from the server.
type Error struct {
	Status     int
	Errcode    string        // "" when the body was not a Matrix error (e.g. Dendrite's 500 {"message":..}, a proxy's HTML page)
	Message    string        // the server's "error" (or Dendrite's "message"), as sent
	RetryAfter time.Duration // from retry_after_ms (body) or Retry-After header (seconds), 0 if none
}

// maxMessage bounds how much of a server's message an error string repeats:
// a misconfigured proxy may answer with a whole page.
const maxMessage = 300

// Error renders e.g. `M_USER_IN_USE: User ID already taken (HTTP 400)`. The
// server's text is sanitised: control characters would otherwise reach the
// operator's terminal verbatim.
func (e *Error) Error() string {
	msg := strings.TrimSuffix(sanitize(e.Message, maxMessage), ".")
	switch {
	case e.Errcode != "" && msg != "":
		return fmt.Sprintf("%s: %s (HTTP %d)", sanitize(e.Errcode, 64), msg, e.Status)
	case e.Errcode != "":
		return fmt.Sprintf("%s (HTTP %d)", sanitize(e.Errcode, 64), e.Status)
	case msg != "":
		return fmt.Sprintf("%s (HTTP %d)", msg, e.Status)
	default:
		return fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
}

// Is makes errors.Is(err, ErrNotFound) hold for Synapse's "no such user/room"
// answer, wherever it came from.
func (e *Error) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound && e.Errcode == ErrcodeNotFound
}

// NetError is an exchange that produced no usable answer: the connection
// failed or was cut, the answer timed out, or it could not be read.
type NetError struct {
	Method string
	URL    string // without the query string
	// Sent reports that the request was at least partly written to the
	// connection: the server may have received and carried it out.
	Sent bool
	Err  error
}

func (e *NetError) Error() string {
	s := fmt.Sprintf("%s %s: %v", e.Method, e.URL, e.Err)
	if e.Sent && e.Method != http.MethodGet {
		s += " (the request may have reached the server)"
	}
	return s
}

func (e *NetError) Unwrap() error { return e.Err }

// Errcode returns the Matrix errcode of the server's answer in err's chain,
// or "" if there is none.
func Errcode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Errcode
	}
	return ""
}

// Status returns the HTTP status of the server's answer in err's chain, or 0.
func Status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// IsUserInUse reports a registration refused because the name is taken
// (compared case-insensitively by both Synapse and Dendrite).
func IsUserInUse(err error) bool { return Errcode(err) == ErrcodeUserInUse }

// IsInvalidUsername reports a localpart the server does not accept (Dendrite
// answers M_BAD_JSON for one that is too long).
func IsInvalidUsername(err error) bool { return Errcode(err) == ErrcodeInvalidUsername }

// IsWeakPassword reports a password refused as too weak (Dendrite: < 8 characters).
func IsWeakPassword(err error) bool { return Errcode(err) == ErrcodeWeakPassword }

// hinted is an error that names the operation, matches a sentinel, keeps the
// server's answer in its chain, and tells the operator what to do next.
type hinted struct {
	op       string
	sentinel error
	cause    error
	hint     string
}

func (h *hinted) Error() string {
	s := h.op + ": " + h.sentinel.Error()
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
