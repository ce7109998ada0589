package matrix

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	sanitizepkg "github.com/provision-matrix/provision/internal/sanitize"
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

// Kind says what a caller should do about an error.
type Kind int

const (
	// Permanent: no later attempt, for this user or any other, can succeed
	// until someone acts: the configuration is wrong (bad shared secret, no
	// such endpoint, bad admin token, untrusted certificate) or the caller
	// cancelled the run.
	Permanent Kind = iota
	// Retry: a transient failure (network error before or after sending, a
	// 5xx, a timeout); the same request may succeed later.
	Retry
	// RateLimited: 429 M_LIMIT_EXCEEDED (or a 429 from a proxy that is not a
	// Matrix error): wait for the returned duration, if any, then retry.
	RateLimited
	// Refused: the server refused this request (a 4xx, or a 429 with another
	// errcode, such as a spam checker's M_UNKNOWN); other users may still succeed.
	Refused
)

func (k Kind) String() string {
	switch k {
	case Permanent:
		return "permanent"
	case Retry:
		return "retry"
	case RateLimited:
		return "rate-limited"
	case Refused:
		return "refused"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Classify says what to do about err, and how long the server asked to wait
// (0 if it did not say). Errors that are neither from the server nor from the
// network (including nil) are Permanent.
func Classify(err error) (Kind, time.Duration) {
	switch {
	case err == nil:
		return Permanent, 0
	case errors.Is(err, context.Canceled):
		return Permanent, 0
	case errors.Is(err, ErrNoAdminAPI), errors.Is(err, ErrNotAdmin), errors.Is(err, ErrBadToken),
		errors.Is(err, ErrNoSharedSecretEndpoint), errors.Is(err, ErrSharedSecretDisabled),
		errors.Is(err, ErrSharedSecretMismatch), errors.Is(err, ErrNotHomeserver):
		return Permanent, 0
	case errors.Is(err, ErrNonceRejected):
		// Two fresh nonces refused in a row: the server restarted between the GET
		// and the POST (twice), or a worker that did not hand the nonce out got
		// the POST. The first passes; the caller's retry budget bounds the second.
		return Retry, 0
	case errors.Is(err, ErrInvalidRequest):
		return Refused, 0
	}
	var e *Error
	if errors.As(err, &e) {
		return classifyStatus(e), e.RetryAfter
	}
	var ne *NetError
	if errors.As(err, &ne) {
		if unfixable(ne.Err) {
			return Permanent, 0
		}
		return Retry, 0
	}
	return Permanent, 0
}

func classifyStatus(e *Error) Kind {
	switch {
	case e.Status == http.StatusTooManyRequests:
		// A proxy's 429 (nginx limit_req) has no Matrix body: it is a rate
		// limit all the same. A Matrix 429 with another errcode is a refusal
		// dressed as one (Synapse's spam checker answers 429 M_UNKNOWN).
		if e.Errcode == ErrcodeLimitExceeded || e.Errcode == "" {
			return RateLimited
		}
		return Refused
	case e.Status == http.StatusRequestTimeout:
		return Retry
	case e.Status == http.StatusNotImplemented, e.Status == http.StatusHTTPVersionNotSupported:
		return Permanent
	case e.Status >= 500:
		return Retry
	case e.Status >= 400:
		return Refused
	default:
		// 3xx: redirects are not followed (a POST would turn into a GET):
		// the homeserver URL needs fixing.
		return Permanent
	}
}

// unfixable reports network errors that retrying cannot cure: an untrusted or
// mismatched certificate, a name that does not resolve, a plain-HTTP server
// behind an https URL.
func unfixable(err error) bool {
	var (
		certErr     *tls.CertificateVerificationError
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		recordErr   tls.RecordHeaderError
		dnsErr      *net.DNSError
	)
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &recordErr):
		return true
	case errors.As(err, &dnsErr):
		return dnsErr.IsNotFound
	}
	return false
}

// MayHaveLanded reports whether the operation that failed with err may
// nevertheless have taken effect on the server: the request was sent and no
// definite answer came back (a 5xx, a timeout, a reset or dropped answer).
// It is false when the server answered with a refusal (4xx), when nothing was
// sent (connection refused, DNS failure), and for read-only requests, which
// change nothing either way. For RegisterSharedSecret it is about the
// registration itself: a failed nonce fetch reports false.
func MayHaveLanded(err error) bool {
	if err == nil {
		return false
	}
	var ro *readOnlyError
	if errors.As(err, &ro) {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status >= 500
	}
	var ne *NetError
	if errors.As(err, &ne) {
		return ne.Sent
	}
	return false
}

// readOnlyError marks the failure of a request that cannot have changed
// anything on the server (a GET), so that MayHaveLanded can say so.
type readOnlyError struct{ err error }

func (e *readOnlyError) Error() string { return e.err.Error() }
func (e *readOnlyError) Unwrap() error { return e.err }

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

// parseError turns a non-2xx answer into an *Error. Synapse and Dendrite put
// the text in "error"; Dendrite's bare 500s use "message". Fields of the wrong
// JSON type are ignored one by one rather than losing the whole body.
func parseError(status int, h http.Header, body []byte, now time.Time) *Error {
	e := &Error{Status: status}
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) == nil {
		e.Errcode = jsonString(fields["errcode"])
		e.Message = jsonString(fields["error"])
		if e.Message == "" {
			e.Message = jsonString(fields["message"])
		}
		var ms float64
		if raw, ok := fields["retry_after_ms"]; ok && json.Unmarshal(raw, &ms) == nil && ms > 0 {
			e.RetryAfter = durationMillis(ms)
		}
	}
	if e.RetryAfter == 0 {
		e.RetryAfter = parseRetryAfter(h.Get("Retry-After"), now)
	}
	if status >= 300 && status < 400 && e.Message == "" {
		if loc := h.Get("Location"); loc != "" {
			e.Message = "redirected to " + loc + "; use that URL as the homeserver"
		}
	}
	return e
}

// maxRetryAfter caps what a server may ask for, so that a garbled header
// cannot stall a run for years; the batch package applies its own ceiling.
const maxRetryAfter = 24 * time.Hour

func durationMillis(ms float64) time.Duration {
	if ms >= float64(maxRetryAfter/time.Millisecond) {
		return maxRetryAfter
	}
	return time.Duration(math.Ceil(ms * float64(time.Millisecond)))
}

// parseRetryAfter reads a Retry-After header: delay-seconds (what Synapse
// sends) or an HTTP-date (what some proxies send). Anything else is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs >= int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d <= 0 {
			return 0
		}
		return min(d, maxRetryAfter)
	}
	return 0
}

func jsonString(raw json.RawMessage) string {
	var s string
	if raw == nil || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// sanitize keeps at most max runes of s and replaces control characters and
// invalid UTF-8, so that a server's text cannot drive the terminal.
func sanitize(s string, max int) string { return sanitizepkg.Line(s, max) }

// Unreachable reports a request that reached no server at all: the connection was
// refused, or the host has no route or no address. Nothing was sent. The preflight
// says so at once (a wrong --homeserver); during a run it is retried, since a server
// that restarts refuses connections for a moment.
func Unreachable(err error) bool {
	var ne *NetError
	if !errors.As(err, &ne) || ne.Sent {
		return false
	}
	var dnsErr *net.DNSError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || (errors.As(err, &dnsErr) && dnsErr.IsNotFound)
}
