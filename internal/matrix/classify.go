package matrix

// What a caller should do about an error: Classify, MayHaveLanded, Unreachable.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

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
