package directory

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// The kinds of failure a caller branches on, with errors.Is. The errors
// returned are *Error values of these kinds, saying what happened and what to
// do.
var (
	// ErrBind: the directory refused the service account (a wrong DN or
	// password, LDAP result 49, or a bind the server does not allow).
	ErrBind = errors.New("the directory refused the bind")
	// ErrTLS: no trusted TLS connection (unknown CA, a certificate for
	// another host, no StartTLS on the server).
	ErrTLS = errors.New("no trusted TLS connection to the directory")
	// ErrUnreachable: no connection at all, or it broke or timed out.
	ErrUnreachable = errors.New("cannot reach the directory")
	// ErrEmptyResult: the search found nobody. A sync must not take an empty
	// answer for "everybody left".
	ErrEmptyResult = errors.New("the search returned no entries")
	// ErrSizeLimit: the server stopped the search at its size limit, so the
	// roster would be incomplete.
	ErrSizeLimit = errors.New("the directory cut the search short")
	// ErrInsecure: the configuration would send the password in clear.
	ErrInsecure = errors.New("refusing a clear-text connection to the directory")
	// ErrNoMemberOf: a rooms map is given, but the entries carry no memberOf.
	ErrNoMemberOf = errors.New("the entries have no memberOf attribute")
)

// Error is a failure of a kind above, with what to do about it. Its text
// never contains the bind password.
type Error struct {
	Kind  error  // one of the Err* values
	Msg   string // what happened, naming the server
	Hint  string // what to do
	Cause error  // the underlying error, or nil
}

func (e *Error) Error() string {
	s := e.Msg
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	if e.Hint != "" {
		s += " — " + e.Hint
	}
	return s
}

// Is makes errors.Is(err, ErrBind) and the like work.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap gives the cause, for errors.As.
func (e *Error) Unwrap() error { return e.Cause }

// dialError classifies a failure to connect or to shake hands.
func dialError(q Query, err error) error {
	if isTLS(err) {
		return tlsError(q, err)
	}
	return &Error{Kind: ErrUnreachable, Msg: "cannot connect to " + q.Scheme + "://" + q.hostPort(), Cause: unwrapLDAP(err),
		Hint: "check the host and port, that the server runs, and that no firewall is in the way (ldaps:// is port 636, ldap:// 389)"}
}

func tlsError(q Query, err error) error {
	hint := "give the CA that signed the directory's certificate with --ca-file"
	var host x509.HostnameError
	if errors.As(err, &host) {
		hint = "the certificate is for another name: connect with the name or address it was issued for (see the server's certificate), not " + q.Host
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired {
		hint = "the directory's certificate has expired (or this machine's clock is wrong): renew it"
	}
	var rec tls.RecordHeaderError
	if errors.As(err, &rec) {
		hint = "the server does not speak TLS on this port: use ldaps:// with its TLS port (usually 636), or ldap:// with --ldap-start-tls"
	}
	return &Error{Kind: ErrTLS, Msg: "TLS with " + q.hostPort() + " failed", Cause: unwrapLDAP(err), Hint: hint}
}

func isTLS(err error) bool {
	// go-ldap reports a failed StartTLS handshake as text only (%v), so the
	// typed checks below cannot see it.
	if err != nil && strings.Contains(err.Error(), "TLS handshake failed") {
		return true
	}
	var (
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		inv     x509.CertificateInvalidError
		verify  *tls.CertificateVerificationError
		rec     tls.RecordHeaderError
		alert   tls.AlertError
	)
	return errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &inv) ||
		errors.As(err, &verify) || errors.As(err, &rec) || errors.As(err, &alert)
}

// unwrapLDAP drops go-ldap's "LDAP Result Code 200 "Network Error":" wrapper
// around network errors, which says nothing an administrator can use.
func unwrapLDAP(err error) error {
	var le *ldap.Error
	if errors.As(err, &le) && le.ResultCode == ldap.ErrorNetwork && le.Err != nil {
		return le.Err
	}
	return err
}

// bindError classifies a failed bind. The password is not in err: go-ldap
// reports the result code and the server's diagnostic message only.
func bindError(q Query, dn string, err error) error {
	msg := fmt.Sprintf("%s refused the bind as %s", q.hostPort(), quote(dn))
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials):
		return &Error{Kind: ErrBind, Msg: msg + ": invalid credentials (LDAP result 49)",
			Hint: "check --ldap-bind-dn and the password in --ldap-password-file or PROVISION_LDAP_PASSWORD (a trailing newline is removed); the account may also be locked or expired"}
	case ldap.IsErrorAnyOf(err, ldap.LDAPResultConfidentialityRequired, ldap.LDAPResultStrongAuthRequired):
		return &Error{Kind: ErrBind, Msg: msg, Cause: err,
			Hint: "the server wants an encrypted connection: use ldaps:// or --ldap-start-tls"}
	case ldap.IsErrorAnyOf(err, ldap.LDAPResultInappropriateAuthentication, ldap.LDAPResultUnwillingToPerform):
		return &Error{Kind: ErrBind, Msg: msg, Cause: err,
			Hint: "the server does not allow this simple bind: check the DN (Active Directory also takes user@domain) and that the account may bind"}
	case isNetwork(err):
		return &Error{Kind: ErrUnreachable, Msg: "the connection to " + q.hostPort() + " broke during the bind", Cause: unwrapLDAP(err),
			Hint: "try again; if it persists, check the server's logs"}
	}
	return &Error{Kind: ErrBind, Msg: msg, Cause: err, Hint: "check --ldap-bind-dn and the password"}
}

func isNetwork(err error) bool {
	var ne net.Error
	return ldap.IsErrorAnyOf(err, ldap.ErrorNetwork) || errors.As(err, &ne)
}

// searchError classifies a failed search.
func searchError(q Query, pageSize int, err error) error {
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded):
		return &Error{Kind: ErrSizeLimit, Msg: fmt.Sprintf("%s stopped the search at its size limit", q.hostPort()),
			Hint: fmt.Sprintf("the server ignored the paged-results control (page size %d): raise the service account's size limit (OpenLDAP: limits ... size.prtotal=unlimited; AD: MaxPageSize), or narrow the filter; nothing was changed", pageSize)}
	case ldap.IsErrorWithCode(err, ldap.LDAPResultAdminLimitExceeded):
		return &Error{Kind: ErrSizeLimit, Msg: fmt.Sprintf("%s refused the search: administrative limit exceeded", q.hostPort()), Cause: err,
			Hint: "lower the page size (--ldap-page-size) or ask the directory's administrator to raise the service account's limits; nothing was changed"}
	case ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension):
		return &Error{Kind: ErrSizeLimit, Msg: fmt.Sprintf("%s does not support paged results (RFC 2696)", q.hostPort()), Cause: err,
			Hint: "without paging the server may cut the roster short: enable paging on the server, or search smaller parts of the tree; nothing was changed"}
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		return &Error{Kind: ErrEmptyResult, Msg: fmt.Sprintf("the base DN %s does not exist on %s", quote(q.BaseDN), q.hostPort()),
			Hint: "check the base DN (and that the service account may see it); nothing was changed"}
	case ldap.IsErrorWithCode(err, ldap.LDAPResultTimeLimitExceeded), ldap.IsErrorWithCode(err, ldap.ErrorNetwork):
		return &Error{Kind: ErrUnreachable, Msg: "the search on " + q.hostPort() + " did not finish", Cause: unwrapLDAP(err),
			Hint: "the connection broke or timed out: try again, or raise --ldap-timeout; nothing was changed"}
	case ldap.IsErrorAnyOf(err, ldap.LDAPResultInsufficientAccessRights):
		return &Error{Kind: ErrBind, Msg: "the service account may not search " + quote(q.BaseDN), Cause: err,
			Hint: "grant it read access to the people (see docs/ldap.md)"}
	case ldap.IsErrorAnyOf(err, ldap.LDAPResultFilterError):
		return &Error{Kind: ErrEmptyResult, Msg: "the server refused the filter " + quote(q.Filter), Cause: err,
			Hint: "check the filter's syntax and attribute names"}
	}
	return fmt.Errorf("search %s: %w", q.String(), err)
}
