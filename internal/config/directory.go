package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// IsDirectory reports whether the roster is a directory (LDAP or Active Directory)
// rather than a file.
func (c *Config) IsDirectory() bool { return c.LDAPURL != "" }

// isLDAPURL tells a directory URL given as the roster argument from a file name.
// ldapi:// is recognised only to be refused with a clear message.
func isLDAPURL(s string) bool {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, p := range []string{"ldap://", "ldaps://", "ldapi://"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// setRoster takes the roster from the positional arguments or from ldap-url: exactly
// one of them.
func (c *Config) setRoster(args []string) error {
	switch len(args) {
	case 0:
		if c.LDAPURL == "" {
			return errorf("name a roster file, e.g. provision --shared-secret-file secret.txt team.csv, or a directory, e.g. ldaps://ldap.example.org/ou=people,dc=example,dc=org", "no roster given")
		}
		return nil
	case 1:
	default:
		return errorf("give exactly one roster file; merge rosters into one first", "%d rosters given: %s", len(args), strings.Join(args, " "))
	}
	arg := args[0]
	if c.LDAPURL != "" {
		// The safe reading of two rosters is neither: deactivating everyone missing
		// from the wrong one cannot be undone.
		return errorf("give the roster either as the argument or as ldap-url (--ldap-url, PROVISION_LDAP_URL or the config file), not both",
			"two rosters given: %s and ldap-url", arg)
	}
	if isLDAPURL(arg) {
		c.LDAPURL = strings.TrimSpace(arg)
		return nil
	}
	c.Roster = arg
	return nil
}

// refuseDirectorySettings: with a roster file, a directory setting would be silently
// ignored.
func (c *Config) refuseDirectorySettings() error {
	for _, f := range []struct {
		set  bool
		name string
	}{
		{c.LDAPBase != "", fLDAPBase}, {c.LDAPFilter != "", fLDAPFilter}, {c.LDAPScope != "", fLDAPScope},
		{c.LDAPBindDN != "", fLDAPBindDN}, {c.LDAPPassword != nil, fLDAPPasswordFile},
		{c.LDAPStartTLS, fLDAPStartTLS},
		// With a roster file and --leave-dropped-rooms, the rooms map lists the rooms
		// provision manages (the only ones anyone is made to leave); its groups are
		// not read.
		{c.RoomsMap != "" && !c.LeaveDroppedRooms, fRoomsMap},
	} {
		if f.set {
			hint := "give a directory (ldaps://...) as the roster, or drop --" + f.name
			if f.name == fRoomsMap {
				hint = "a rooms map turns directory groups into rooms; in a roster file, list each person's rooms in the rooms column (with --leave-dropped-rooms, a rooms map may name the rooms provision manages)"
			}
			return errorf(hint, "--%s applies only to a directory roster, and the roster is the file %s", f.name, c.Roster)
		}
	}
	return nil
}

// validateDirectory checks a directory roster's settings as far as that is possible
// without the directory package (the CLI's directory.Config.Validate checks the DN and
// filter grammar): the URL's scheme and host, that the password cannot travel in
// clear, the scope, the bind settings and the mapping's shape.
func (c *Config) validateDirectory() error {
	if c.Roster != "" {
		return errorf("give the roster either as a file or as a directory URL, not both", "two rosters given: %s and a directory", c.Roster)
	}
	if c.Format != "" {
		return errorf("drop --format: a directory's entries are mapped with --ldap-map", "--format %s applies only to a roster file, and the roster is a directory", c.Format)
	}
	if c.Columns != "" {
		return errorf("map a directory's attributes with --ldap-map, e.g. --ldap-map localpart=uid,displayname=cn,email=mail", "--columns applies only to a CSV roster, and the roster is a directory")
	}
	u, err := parseLDAPURL(c.LDAPURL)
	if err != nil {
		return err
	}
	if u.base == "" && c.LDAPBase == "" {
		return errorf(fmt.Sprintf("say where the people are: ldaps://%s/ou=people,dc=example,dc=org, or set ldap-base", u.hostport), "the directory URL has no base DN")
	}
	if u.scheme == "ldaps" && c.LDAPStartTLS {
		return errorf(fmt.Sprintf("use either ldaps://%s or ldap://%s with --ldap-start-tls", u.hostport, u.host),
			"--ldap-start-tls with ldaps://: the connection is TLS already")
	}
	if u.scheme == "ldap" && !c.LDAPStartTLS && !ldapLoopback(u.host) {
		return errorf(fmt.Sprintf("use ldaps://%s (port 636) or add --ldap-start-tls; ldap:// without TLS is only allowed to 127.0.0.1, ::1 or localhost", u.host),
			"refusing ldap://%s without TLS: the bind password and everyone's names and addresses would cross the network unencrypted", u.hostport)
	}
	switch c.LDAPScope {
	case "":
	case "sub", "subtree":
		c.LDAPScope = "sub"
	case "one", "onelevel", "single":
		c.LDAPScope = "one"
	case "base":
	default:
		return errorf("use sub (everything below the base DN), one (the entries directly below it) or base", "unknown --ldap-scope %q", c.LDAPScope)
	}
	if c.LDAPFilter != "" && !balancedFilter(c.LDAPFilter) {
		return errorf("write the filter in parentheses, e.g. (objectClass=inetOrgPerson) or (&(objectClass=user)(mail=*))", "--ldap-filter %q is not an LDAP filter", c.LDAPFilter)
	}
	switch {
	case c.LDAPBindDN != "" && c.LDAPPassword == nil:
		// An empty password is an unauthenticated bind, which servers treat as
		// anonymous: the search would quietly see less.
		return errorf("put the service account's password in --ldap-password-file FILE or "+EnvLDAPPassword, "--ldap-bind-dn without a password")
	case c.LDAPBindDN == "" && c.LDAPPassword != nil:
		return errorf("give the service account's DN with --ldap-bind-dn, e.g. cn=provision,ou=services,dc=example,dc=org", "a directory password (%s) without --ldap-bind-dn", c.LDAPPasswordSource)
	}
	return checkLDAPMap(c.LDAPMap)
}

type ldapURL struct {
	scheme, host, hostport, base string
}

// parseLDAPURL reads the parts of an RFC 4516 URL that config checks:
// ldap[s]://HOST[:PORT]/BASE-DN[?...].
func parseLDAPURL(raw string) (ldapURL, error) {
	const example = "write it as ldaps://HOST/BASE-DN, e.g. ldaps://ldap.example.org/ou=people,dc=example,dc=org"
	var u ldapURL
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return u, errorf(example, "%q is not an LDAP URL", raw)
	}
	u.scheme = strings.ToLower(scheme)
	switch u.scheme {
	case "ldap", "ldaps":
	case "ldapi":
		return u, errorf("use ldaps://HOST, or ldap://127.0.0.1 for a directory on this machine", "ldapi:// (a Unix socket) is not supported")
	default:
		return u, errorf(example, "the directory URL's scheme must be ldap or ldaps, not %q", scheme)
	}
	hostport, path := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		hostport, path = rest[:i], strings.TrimPrefix(rest[i:], "/")
	}
	if strings.Contains(hostport, "@") {
		// Not quoted: what comes before the @ may be a password.
		return u, errorf("give the account with --ldap-bind-dn and its password with --ldap-password-file or "+EnvLDAPPassword, "the directory URL holds a user name or password")
	}
	u.hostport = hostport
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if h, err := url.PathUnescape(host); err == nil {
		host = h
	}
	if host == "" {
		return u, errorf(example, "the directory URL %q names no host", raw)
	}
	u.host = host
	base, _, _ := strings.Cut(path, "?")
	if b, err := url.PathUnescape(base); err == nil {
		base = b
	}
	u.base = strings.TrimSpace(base)
	return u, nil
}

// ldapLoopback is the directory package's rule for ldap:// in clear: localhost or a
// loopback address, names not resolved.
func ldapLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// balancedFilter is the shape of an RFC 4515 filter: in parentheses that balance (a
// parenthesis inside a value is written \28 or \29).
func balancedFilter(f string) bool {
	if !strings.HasPrefix(f, "(") || !strings.HasSuffix(f, ")") {
		return false
	}
	depth := 0
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0
}

// ldapPresets are the mapping presets and their aliases; keep them in step with
// internal/directory's presets (config does not import it).
var ldapPresets = map[string]bool{
	"ldap": true, "openldap": true, "inetorgperson": true, "389ds": true, "freeipa": true,
	"ad": true, "activedirectory": true, "active-directory": true, "samba": true,
}

const ldapMapHint = "use --ldap-map ldap or ad, optionally followed by changes (ad,sso_subject=objectGUID), or a mapping such as localpart=uid,displayname=cn,email=mail"

// checkLDAPMap checks the shape of --ldap-map: a preset, optionally followed by
// KEY=ATTRIBUTE changes, or a whole mapping with a localpart. The keys and attribute
// names are the directory package's to check.
func checkLDAPMap(spec string) error {
	if spec == "" {
		return nil
	}
	parts := strings.Split(spec, ",")
	preset := false
	hasLocalpart := false
	for i, p := range parts {
		p = strings.TrimSpace(p)
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			if i == 0 && ldapPresets[strings.ToLower(p)] {
				preset = true
				continue
			}
			if i == 0 {
				return errorf(ldapMapHint, "--ldap-map: no preset %q", p)
			}
			return errorf(ldapMapHint, "--ldap-map: %q is not KEY=ATTRIBUTE", p)
		}
		if strings.TrimSpace(k) == "" || strings.TrimSpace(v) == "" {
			return errorf(ldapMapHint, "--ldap-map: %q is not KEY=ATTRIBUTE", p)
		}
		if strings.EqualFold(strings.TrimSpace(k), "localpart") {
			hasLocalpart = true
		}
	}
	if !preset && !hasLocalpart {
		return errorf("add localpart=ATTRIBUTE, e.g. localpart=uid (OpenLDAP) or localpart=sAMAccountName (Active Directory)", "--ldap-map: the mapping has no localpart")
	}
	return nil
}
