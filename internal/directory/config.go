package directory

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/provision-matrix/provision/internal/roster"
)

// Defaults.
const (
	// DefaultPageSize is half of Active Directory's MaxPageSize (1,000), so
	// that a page is never cut by it, and small enough that a page in flight
	// costs little memory.
	DefaultPageSize = 500
	// DefaultTimeout bounds the connection and each request (a bind, a page).
	DefaultTimeout = 30 * time.Second
	// maxCAFile bounds the CA file: a bundle of a few certificates is a few
	// kilobytes.
	maxCAFile = 1 << 20
)

// Config says how to read a roster from a directory.
type Config struct {
	Query Query
	// BindDN is the read-only service account (cn=provision,ou=services,...
	// or, for AD, provision@corp.example.org); "" binds anonymously.
	BindDN string
	// BindPassword is the service account's password. It is sent only over
	// TLS (or to a loopback address) and never appears in an error.
	BindPassword []byte
	// StartTLS upgrades an ldap:// connection before the bind.
	StartTLS bool
	// CAFile is a PEM file of the CAs to trust for the directory's
	// certificate, instead of the system's (a private CA); "" trusts the
	// system's.
	CAFile string
	// Mapping turns entries into users; nil is the ldap preset.
	Mapping *Mapping
	// Rooms gives rooms by group; nil gives none.
	Rooms *RoomsMap
	// SSOProvider is the auth provider every person is bound to when the
	// mapping gives sso_subject but not sso_provider (Synapse's idp_id, such
	// as "oidc-keycloak").
	SSOProvider string
	// PageSize is the paged-results page size; 0 is DefaultPageSize.
	PageSize int
	// Timeout bounds the connection and each request; 0 is DefaultTimeout.
	Timeout time.Duration
	// Roster are the roster's validation options (ServerName,
	// CheckRecipient); Columns must be nil.
	Roster roster.Options
	// SpoolDir is where the validated users are kept until the run reads
	// them; "" is os.TempDir().
	SpoolDir string
}

func (c *Config) mapping() *Mapping {
	if c.Mapping == nil {
		m := presets["ldap"]
		return &m
	}
	return c.Mapping
}

func (c *Config) pageSize() int {
	if c.PageSize == 0 {
		return DefaultPageSize
	}
	return c.PageSize
}

func (c *Config) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

func (c *Config) filter() string {
	if c.Query.Filter != "" {
		return c.Query.Filter
	}
	return c.mapping().filter
}

// Validate checks the configuration without connecting: the query, that the
// password cannot travel in clear, the CA file and the mapping.
func (c *Config) Validate() error {
	q := c.Query
	if q.Scheme == "" || q.Host == "" {
		return errors.New("no directory server — give its URL, e.g. ldaps://ldap.example.org/ou=people,dc=example,dc=org")
	}
	if err := q.check(); err != nil {
		return err
	}
	if q.Scheme == "ldaps" && c.StartTLS {
		return fmt.Errorf("--ldap-start-tls with ldaps://%s: the connection is TLS already — use either ldaps:// or ldap:// with --ldap-start-tls", q.hostPort())
	}
	if q.Scheme == "ldap" && !c.StartTLS && !loopback(q.Host) {
		return &Error{Kind: ErrInsecure, Msg: fmt.Sprintf("refusing ldap://%s without TLS: the password and everyone's names and addresses would cross the network in clear", q.hostPort()),
			Hint: fmt.Sprintf("use ldaps://%s (port 636) or --ldap-start-tls; ldap:// without TLS is only allowed to 127.0.0.1, ::1 or localhost", q.Host)}
	}
	switch {
	case c.BindDN != "" && len(c.BindPassword) == 0:
		return errors.New("--ldap-bind-dn without a password: an empty password is an unauthenticated bind, which servers treat as anonymous — put the password in --ldap-password-file or PROVISION_LDAP_PASSWORD")
	case c.BindDN == "" && len(c.BindPassword) > 0:
		return errors.New("a directory password without --ldap-bind-dn — give the service account's DN")
	}
	if c.PageSize < 0 || c.PageSize > 100000 {
		return fmt.Errorf("page size %d: use 1 to 100000 (Active Directory sends at most 1000 per page) — or leave it out for %d", c.PageSize, DefaultPageSize)
	}
	if c.SSOProvider != "" {
		if msg, hint := roster.CheckSSOProvider(c.SSOProvider); msg != "" {
			return fmt.Errorf("--ldap-sso-provider: %s — %s", msg, hint)
		}
	}
	m := c.mapping()
	if m.fields[tSSOSubject] != nil && m.fields[tSSOProvider] == nil && c.SSOProvider == "" {
		return errors.New("the mapping gives sso_subject but no provider — give the identity provider's id with --ldap-sso-provider (Synapse's idp_id, e.g. oidc-keycloak), or map sso_provider")
	}
	if _, err := c.tlsConfig(); err != nil {
		return err
	}
	return nil
}

// tlsConfig is the TLS configuration for ldaps:// and StartTLS: the
// certificate must be for the host of the URL and signed by the CA file's
// CAs, or the system's without one.
func (c *Config) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{ServerName: c.Query.Host, MinVersion: tls.VersionTLS12}
	if c.CAFile == "" {
		return cfg, nil
	}
	f, err := os.Open(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	defer f.Close()
	pem, err := io.ReadAll(io.LimitReader(f, maxCAFile+1))
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	if len(pem) > maxCAFile {
		return nil, fmt.Errorf("--ca-file %s is larger than 1 MiB — give the PEM file of the CA that signed the directory's certificate", c.CAFile)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s holds no PEM certificate — give the CA certificate in PEM (-----BEGIN CERTIFICATE-----); convert DER with: openssl x509 -inform der -in ca.cer -out ca.pem", c.CAFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}
